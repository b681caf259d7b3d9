"""The lab book: one JSON line per training run, rendered to markdown for reading."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

LAB_BOOK = Path(__file__).with_name("lab_book.jsonl")


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append(entry: dict, book: Path | None = None) -> None:
    book = book or LAB_BOOK  # read at call time, so a test can point it elsewhere
    with book.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
    render(book)


def render(book: Path = LAB_BOOK) -> None:
    lines = ["# Lab book", "", "Every training run, appended by the trainer (`lab_book.jsonl`). *val acc* is the",
             "last epoch's (augmentation off, before batch-norm re-estimation); *val (final)* is the shipped rule's",
             "accuracy on val after calibration, the figure runs are chosen by; *val BA* its balanced accuracy and,",
             "for IDC, *val slide err* the complete val slides' IDC-fraction error in points (runs since",
             "2026-11-26 05:00). Test is read once per run.", "",
             "| date | task | model | epochs | train acc | val acc | val (final) | val BA | val slide err | test acc "
             "| minutes | git | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for raw in book.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        e = json.loads(raw)
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v if v is not None else "")
        lines.append(" | ".join([
            "", e.get("date", "")[:16], e.get("task", ""), e.get("name", ""), str(e.get("epochs", "")),
            fmt(e.get("train_accuracy")), fmt(e.get("val_accuracy")),
            fmt(e.get("val_accuracy_clean")), fmt(e.get("val_balanced_accuracy")),
            f"{100 * e['val_complete_fraction_mae']:.1f}" if "val_complete_fraction_mae" in e else "",
            fmt(e.get("test_accuracy")),
            f"{e.get('minutes', 0):.1f}", e.get("git_sha", ""), e.get("notes", ""), "",
        ]).strip())
    book.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
