"""Write the Debian changelog from CHANGELOG.md's release notes (one entry per `## <version> — <date>` section).

Usage: changelog.py CHANGELOG.md VERSION "NAME <ADDRESS>" [DEBIAN_REVISION] > changelog

The package's version is VERSION-DEBIAN_REVISION (default 1); earlier releases are listed with revision 1.
"""

from __future__ import annotations

import re
import sys
import textwrap
from datetime import UTC, datetime
from email.utils import format_datetime

SECTION = re.compile(r"^## (\S+) — (\d{4}-\d{2}-\d{2})\n(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)


def debian_changelog(notes: str, version: str, maintainer: str, revision: str = "1") -> str:
    sections = SECTION.findall(notes)
    if version not in {v for v, _, _ in sections}:
        raise ValueError(f"CHANGELOG.md has no section '## {version} — YYYY-MM-DD': write the release notes first")
    entries = []
    for ver, date, body in sections:
        items = [" ".join(item.split()) for item in re.split(r"^- ", body, flags=re.MULTILINE)[1:]]
        lines = [textwrap.fill(item, 78, initial_indent="  * ", subsequent_indent="    ") for item in items]
        when = format_datetime(datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC))
        entries.append(f"slidetally ({ver}-{revision if ver == version else 1}) unstable; urgency=medium\n\n" + "\n".join(lines)
                       + f"\n\n -- {maintainer}  {when}\n")
    return "\n".join(entries)


if __name__ == "__main__":
    try:
        with open(sys.argv[1], encoding="utf-8") as notes:
            sys.stdout.write(debian_changelog(notes.read(), *sys.argv[2:5]))
    except ValueError as err:
        sys.exit(f"changelog.py: {err}")
