"""Where a command's outputs may go, checked before anything is written; and writing them all or
none: every output is rendered and written to a temp file beside its target (flushed to disk)
first, and only when all of them are there are they renamed into place.

An output never lands in the analysed folder (it is only read), in SlideTally's data folder
(sessions, site models), on a model file, on another output or on the CSV's JSON sidecar."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from desktop.core.atomic import _remove_leftovers, _temp_name
from desktop.core.errors import ActionRefused, ExportError
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


def check_destinations(outputs: dict[str, Path], *, analysed: Path | None, data_dir: Path | None,
                       model_files: Iterable[Path] = (), model_folders: Iterable[Path] = ()) -> None:
    """Refuse (one sentence, nothing written) any output that may not be written where it points.
    `outputs`: a name the technician knows ('--pdf', "the --csv file's JSON sidecar") → its path."""
    seen: dict[Path, str] = {}
    models = [Path(m) for m in model_files]
    for name, given in outputs.items():
        path = Path(given).resolve()
        shown = readable(str(given))
        if path.is_dir():
            raise OutputRefused(f"{name} {shown} is a folder; give a file name.")
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


class StagedOutputs:
    """Temp files beside their targets, renamed into place together by `commit`."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def write(self, path: Path, data: str | bytes, encoding: str = "utf-8-sig") -> None:
        with self.file(path) as tmp:
            binary = isinstance(data, bytes)
            with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": encoding, "newline": ""})) as out:
                out.write(data)

    @contextmanager
    def file(self, path: Path) -> Iterator[Path]:
        """A temp path for a writer that wants a file name (Qt's PDF writer); flushed to disk after."""
        path = Path(path)
        _remove_leftovers(path)
        tmp = _temp_name(path)
        self._staged.append((tmp, path))
        try:
            yield tmp
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise ExportError(f"Could not write {readable(path.name)}.")
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ExportError(f"Could not write {readable(path.name)}: {exc.strerror or exc}") from exc

    def commit(self) -> None:
        for tmp, path in self._staged:
            os.replace(tmp, path)
        self._staged.clear()

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()


@contextmanager
def all_or_none() -> Iterator[StagedOutputs]:
    """Stage every output in the block; on leaving it, all are renamed into place, or (on any error,
    a full disk, Ctrl+C) none is and no temp file is left."""
    staged = StagedOutputs()
    try:
        yield staged
        staged.commit()
    finally:
        staged.discard()
