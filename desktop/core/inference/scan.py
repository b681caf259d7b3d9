"""List what is in a folder (recursive, sorted): each file an item the model calls.

Nothing drops out silently: everything but hidden files becomes an item, and what cannot be
read at all (a pipe, a device, a broken link, a folder we may not list, a path too long)
carries the reason that becomes its row's."""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desktop.core.inference.files import content_hash as bytes_hash
from desktop.core.inference.files import not_regular_reason, os_error_reason
from desktop.core.inference.imaging import InputSpec, UnreadableImage, decode_image, decode_prepared
from desktop.core.inference.items import Sources


@dataclass(frozen=True)
class SourceFile:
    """One file of the analysed folder, with what tells us whether it changed (an `Item`)."""

    path: Path
    relative: str
    size: int
    mtime: float
    problem: str = ""  # why it cannot be read at all: the reason on its row

    @property
    def source_name(self) -> str:
        return self.relative

    @property
    def position(self) -> None:
        return None

    def _bytes(self, sources: Sources | None, keep: bool) -> bytes:
        if self.problem:  # a pipe, a device, a folder we may not list: never opened
            raise UnreadableImage(self.problem)
        return (sources or Sources()).file_bytes(self.path, keep)

    def content_hash(self, sources: Sources | None = None) -> str:
        """The hash of the file's bytes (with the run's `sources`, read once for the hash and the pixels)."""
        return bytes_hash(self._bytes(sources, keep=True))

    def read(self, spec: InputSpec | None = None, sources: Sources | None = None) -> np.ndarray:
        data = self._bytes(sources, keep=False)
        return decode_image(data) if spec is None else decode_prepared(data, spec)

    def scale(self) -> None:
        return None


class ScanCancelled(Exception):
    """The scan was stopped by the technician (or the app closing)."""


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _folder_problem(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return os_error_reason(exc, path)
    if isinstance(exc, PermissionError):
        return "folder not readable (no permission)"
    return f"folder not readable ({exc.strerror or exc})"


def source_file(path: Path, folder: Path) -> SourceFile:
    """One file as an item of `folder` (its status read now; a problem becomes its reason)."""
    relative = _relative(path, folder)
    try:
        st = os.stat(path)  # follows links: a link to a good file is that file
    except OSError as exc:
        return SourceFile(path, relative, 0, 0.0, os_error_reason(exc, path))
    if not stat.S_ISREG(st.st_mode):
        return SourceFile(path, relative, 0, st.st_mtime, not_regular_reason(st.st_mode))
    return SourceFile(path, relative, st.st_size, st.st_mtime)


def scan_folder(folder: Path, cancel: threading.Event | None = None) -> list[SourceFile]:
    """Everything under `folder` but hidden files and folders, sorted by relative path.

    Raises OSError when `folder` itself cannot be listed."""
    folder = Path(folder)
    with os.scandir(folder):
        pass  # the folder itself unreadable is an error for the whole folder, not a row
    found: list[SourceFile] = []

    def not_listed(exc: OSError) -> None:
        path = Path(exc.filename) if exc.filename else folder
        if path == folder:
            raise exc
        found.append(SourceFile(path, _relative(path, folder) + "/", 0, 0.0, _folder_problem(exc, path)))

    for root, dirs, files in os.walk(folder, onerror=not_listed):
        if cancel is not None and cancel.is_set():
            raise ScanCancelled()
        here = Path(root)
        kept = []
        for name in sorted(dirs):
            if name.startswith("."):
                continue
            if os.path.islink(here / name):  # never followed: it could lead anywhere, or round in a loop
                found.append(SourceFile(here / name, _relative(here / name, folder) + "/", 0, 0.0,
                                        "link to a folder (not followed)"))
                continue
            kept.append(name)
        dirs[:] = kept
        found += [source_file(here / name, folder) for name in files if not name.startswith(".")]
    found.sort(key=lambda f: f.relative)
    return found
