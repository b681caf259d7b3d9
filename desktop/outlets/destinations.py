"""Where a command's outputs may go, checked before anything is written (they are then written all
or none by `core.atomic.all_or_none`).

An output never lands in the analysed folder (it is only read), in SlideTally's data folder
(sessions, site models), on a model file, on another output or on the CSV's JSON sidecar."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from desktop.core.errors import ActionRefused
from desktop.core.names import readable


class OutputRefused(ActionRefused):
    """An output path that would overwrite a record, a source image, a model or another output."""


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.is_relative_to(Path(folder).resolve())


def _same(a: Path, b: Path) -> bool:
    try:
        return a == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite_file(path: Path) -> bool:
    """A file that starts as every SQLite database does (a session, wherever it lies)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def check_destinations(outputs: dict[str, Path], *, analysed: Path | None, data_dir: Path | None,
                       model_files: Iterable[Path] = (), model_folders: Iterable[Path] = (),
                       inputs: Iterable[Path] = ()) -> None:
    """Refuse (one sentence, nothing written) any output that may not be written where it points: the one
    check of every writer (the CLI, the window, the trainer). `outputs`: a name the technician knows ('--pdf',
    "the --csv file's JSON sidecar") → its path; `inputs`: what the command reads (a session file, a model)."""
    seen: dict[Path, str] = {}
    models = [Path(m) for m in model_files]
    sources = [Path(i) for i in inputs]
    for name, given in outputs.items():
        path = Path(given).resolve()
        shown = readable(str(given))
        if path.is_dir():
            raise OutputRefused(f"{name} {shown} is a folder; give a file name.")
        if any(_same(path, i) for i in sources):
            raise OutputRefused(f"{name} {shown} is what this command reads; write the report elsewhere.")
        if is_sqlite_file(path):
            raise OutputRefused(f"{name} {shown} is a SQLite database (a session record); write the report elsewhere.")
        if _inside(path, analysed):
            raise OutputRefused(f"{name} {shown} is inside the analysed folder, which SlideTally only reads; "
                                "write the report elsewhere.")
        if _inside(path, data_dir):
            raise OutputRefused(f"{name} {shown} is inside SlideTally's data folder (sessions and site models); "
                                "write the report elsewhere.")
        if any(_inside(path, f) for f in model_folders) or any(_same(path, m) for m in models):
            raise OutputRefused(f"{name} {shown} is a model file or in a models folder.")
        other = next((n for p, n in seen.items() if _same(path, p)), None)
        if other is not None:
            raise OutputRefused(f"{name} and {other} would both be the same file ({shown}); give each its own.")
        seen[path] = name
