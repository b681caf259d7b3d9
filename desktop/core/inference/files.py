"""Read files from the technician's folder without trusting them: only regular files (after
following links), opened without blocking, never more than a size cap; every refusal is a
plain reason that ends up on the file's row. A file is known by the hash of its bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The largest file read at all. An analyser image is well under 10 MB and a stitched tissue
# image rarely over 100 MB; anything larger is refused before a byte of it is read.
MAX_FILE_BYTES = 256 * 2**20

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


class UnreadableFile(Exception):
    """A file that is not read; the message says why in plain words."""


def megabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{max(1, round(n / 2**20))} MB"


def not_regular_reason(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def os_error_reason(exc: OSError, path: Path | str) -> str:
    """A plain reason for an OS error met while looking at or reading a file."""
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long (longer than the system allows)"
    if exc.errno == errno.ELOOP:
        return "broken link (it leads round in a loop)"
    if exc.errno == errno.ENOENT:
        return "broken link (what it points to does not exist)" if os.path.islink(path) else \
            "file disappeared before it could be read"
    if isinstance(exc, PermissionError):
        return "no permission to read the file"
    return f"could not read the file ({exc.strerror or exc})"


def _too_large(size: int, limit: int) -> UnreadableFile:
    return UnreadableFile(f"file too large ({megabytes(size)}; the limit is {megabytes(limit)})")


def check_regular(path: Path | str, limit: int = MAX_FILE_BYTES) -> os.stat_result:
    """The file's status, following links; refuses pipes, devices, folders and oversized files
    before anything opens them (opening a tape drive or a pipe can block or act)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UnreadableFile(os_error_reason(exc, path)) from exc
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile(not_regular_reason(st.st_mode))
    if st.st_size > limit:
        raise _too_large(st.st_size, limit)
    return st


@contextmanager
def _open_regular(path: Path | str, precheck_limit: int) -> Iterator[tuple[int, os.stat_result]]:
    """The file opened for reading, and its status as opened: checked as a regular file of at most
    `precheck_limit` bytes before it is opened, and again after (the path may have been swapped for a
    pipe since the check). OS errors inside become `UnreadableFile` with the reason."""
    check_regular(path, precheck_limit)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise UnreadableFile(os_error_reason(exc, path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(not_regular_reason(st.st_mode))
        yield fd, st
    except OSError as exc:
        raise UnreadableFile(os_error_reason(exc, path)) from exc
    finally:
        os.close(fd)


def read_file(path: Path | str, limit: int = MAX_FILE_BYTES, head: int | None = None) -> bytes:
    """The file's bytes (or its first `head` bytes); `UnreadableFile` with the reason otherwise."""
    with _open_regular(path, limit if head is None else 2**63) as (fd, st):
        want = head if head is not None else limit + 1
        if head is None and st.st_size > limit:
            raise _too_large(st.st_size, limit)
        chunks, got = [], 0
        while got < want:
            chunk = os.read(fd, min(want - got, 4 * 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if head is None and got > limit:  # grew while being read
            raise _too_large(got, limit)
        return b"".join(chunks)


def hash_stream(path: Path | str, digest) -> None:
    """Feed a file of any size to `digest` (a hashlib object) in chunks, with read_file's checks
    (regular files only, never blocking): a whole-slide image is hashed without being held."""
    with _open_regular(path, 2**63) as (fd, _):
        while chunk := os.read(fd, 8 * 2**20):
            digest.update(chunk)


def _digest(data: bytes = b""):
    """The hash a file's identity is made with (one definition for whole files and streamed slides)."""
    return hashlib.blake2b(data, digest_size=16)


def content_hash(data: bytes) -> str:
    """A file's identity: the same bytes give the same hash, whatever its size or mtime say."""
    return _digest(data).hexdigest()


def hash_large_file(path: Path) -> str | None:
    """The content hash of a file of any size (a whole slide), read in chunks; the same hash
    `content_hash` gives its bytes. None when it cannot be read."""
    digest = _digest()
    try:
        hash_stream(path, digest)
    except UnreadableFile:
        return None
    return digest.hexdigest()
