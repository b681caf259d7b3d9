"""Find the images in a folder (recursive, sorted, by content as well as by extension) and
tell files apart by their bytes."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from desktop.core.imaging import IMAGE_EXTENSIONS, sniff_format

SKIP_SUFFIXES = {".csv", ".pdf", ".txt", ".md", ".json", ".sqlite", ".db", ".onnx", ".xlsx", ".log"}


@dataclass(frozen=True)
class SourceFile:
    """One file of the analysed folder, with what tells us whether it changed."""

    path: Path
    relative: str
    size: int
    mtime: float


def _looks_like_image(path: Path) -> bool:
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True  # decoding decides; a bad one becomes an "unreadable" row with its reason
    if path.suffix.lower() in SKIP_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            return sniff_format(handle.read(16)) is not None
    except OSError:
        return False


class ScanCancelled(Exception):
    """The scan was stopped by the technician (or the app closing)."""


def content_hash(data: bytes) -> str:
    """A file's identity: the same bytes give the same hash, whatever its size or mtime say."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def hash_file(path: Path) -> str | None:
    """The content hash of a file, or None when it cannot be read."""
    try:
        return content_hash(Path(path).read_bytes())
    except OSError:
        return None


def scan_folder(folder: Path, cancel: threading.Event | None = None) -> list[SourceFile]:
    """Every image file under `folder` (hidden files and folders skipped), sorted by relative path."""
    folder = Path(folder)
    found: list[SourceFile] = []
    for root, dirs, files in os.walk(folder):
        if cancel is not None and cancel.is_set():
            raise ScanCancelled()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            if not _looks_like_image(path):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            found.append(SourceFile(path, path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime))
    found.sort(key=lambda f: f.relative)
    return found
