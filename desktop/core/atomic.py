"""Every file the app writes is written whole or not at all: a temp file beside it, flushed to
disk, then renamed over it. CSV, HL7, FHIR, the PDF and site models all go through here; a
command's several outputs are staged together and renamed together (`all_or_none`)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from desktop.core.errors import ExportError
from desktop.core.names import readable

_STALE_TEMP_S = 600  # a temp file this old, of a process that is gone, is a killed export's leftover


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _remove_leftovers(path: Path) -> None:
    """Temp files of earlier exports to `path` that were killed before they could clean up."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp$")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if not match or psutil.pid_exists(int(match.group(1))):
            continue
        try:
            if time.time() - sibling.lstat().st_mtime > _STALE_TEMP_S:
                sibling.unlink()
        except OSError:
            pass


def write_atomically(path: Path, data: str | bytes, encoding: str = "utf-8-sig") -> None:
    """Write the whole file or nothing: a temp file beside it, renamed over it at the end (text in
    `encoding`, or bytes as they are). The file gets the permissions the umask gives (0644 under
    022), like any file the user makes."""
    path = Path(path)
    _remove_leftovers(path)
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise ExportError(f"Cannot write in {readable(str(path.parent))}: {exc.strerror or exc}. "
                          "Choose another folder.") from exc
    try:
        binary = isinstance(data, bytes)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": encoding, "newline": ""})) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, or Ctrl+C: no temp file survives
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportError(f"Could not write {readable(path.name)}: {exc.strerror or exc}") from exc
        raise


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
        if not path.parent.is_dir():
            raise ExportError(f"Cannot write in {readable(str(path.parent))}: the folder does not exist. "
                              "Choose another folder.")
        if path.is_dir():
            raise ExportError(f"Cannot write {readable(path.name)}: a folder has that name. Choose another name.")
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
        """Rename every staged file into place; if one rename fails, the ones before it are undone (each target
        gets its previous content back, or is removed if it is new), so it is still all or none."""
        done: list[tuple[Path, Path | None]] = []  # (target, its previous content kept aside, or None if new)
        try:
            for tmp, path in self._staged:
                previous = _keep_aside(path)
                done.append((path, previous))
                os.replace(tmp, path)
        except OSError as exc:
            for path, previous in reversed(done):
                _restore(path, previous)
            raise ExportError(f"Could not write {readable(path.name)}: {exc.strerror or exc}") from exc
        for _, previous in done:
            if previous is not None:
                previous.unlink(missing_ok=True)
        self._staged.clear()

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()


def _keep_aside(path: Path) -> Path | None:
    """A second name for the target's current content (a hard link, or a copy where links are not allowed)."""
    if not path.exists():
        return None
    aside = _temp_name(path).with_suffix(".previous")
    try:
        os.link(path, aside)
    except OSError:
        shutil.copy2(path, aside)
    return aside


def _restore(path: Path, previous: Path | None) -> None:
    try:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(previous, path)
    except OSError:
        pass  # the target keeps the new content; the error being raised says what failed


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


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temp path beside `path` for a writer that wants a file name (Qt's PDF writer): what it
    leaves there replaces `path` when the block ends; on any failure, or an empty file, nothing does."""
    with all_or_none() as staged, staged.file(path) as tmp:
        yield tmp
