"""A measurement's Markdown table: printed, and written where --markdown says (the card quotes it from there)."""

from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], markdown: Path | None) -> int:
    """Print the table's lines; write them to `markdown` too when given. The script's exit status (0)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if markdown:
        markdown.write_text(text, encoding="utf-8")
    return 0
