"""The bundle's files as installer/sbom.py reads them: every file by its path from the bundle's root, the top-level
modules of the program's PYZ archive, and the shared libraries an SBOM must name."""

from __future__ import annotations

import fnmatch
import marshal
import os
import re
import struct
from pathlib import Path

EXTENSION = re.compile(r"\.(cpython-\d+[^/]*|abi3)\.so$")  # a Python extension module, named by its distribution


def bundle_files(bundle: Path) -> dict[str, Path]:
    """Every file of the bundle, by its path from the bundle's root (links included, as their own paths)."""
    files = {}
    for folder, _, names in os.walk(bundle, followlinks=True):
        for name in names:
            path = Path(folder, name)
            files[path.relative_to(bundle).as_posix()] = path
    return files


def matching(files: dict[str, Path], patterns: tuple[str, ...]) -> dict[str, Path]:
    return {rel: p for rel, p in files.items() if any(fnmatch.fnmatch(rel, pat) for pat in patterns)}


def real(paths: dict[str, Path]) -> list[Path]:
    return sorted({p.resolve() for p in paths.values() if p.exists()})


COOKIE = struct.Struct("!8sIIii64s")  # magic, package length, TOC offset, TOC length, Python version, libpython


def pyz_modules(program: Path) -> set[str]:
    """Top-level names of the modules in a PyInstaller program's PYZ archive: the 'z' entry of the CArchive appended
    to the executable (cookie '!8sIIii64s' at its end, entries '!IIIIBc' + name; the PYZ's TOC is marshalled)."""
    data = program.read_bytes() if program.is_file() else b""
    end = data.rfind(b"MEI\014\013\012\013\016")
    if end < 0:
        return set()
    _, length, toc, toc_length, _, _ = COOKIE.unpack_from(data, end)
    start = end + COOKIE.size - length
    pos, names = start + toc, set()
    while pos < start + toc + toc_length:
        size, offset, _, _, _, kind = struct.unpack_from("!IIIIBc", data, pos)
        if kind == b"z" and data[start + offset:start + offset + 4] == b"PYZ\0":
            index, = struct.unpack_from("!i", data, start + offset + 8)
            names |= {name.split(".")[0] for name in dict(marshal.loads(data[start + offset + index:]))}
        pos += size
    return names


def shared_libraries(files: dict[str, Path]) -> list[str]:
    """The bundle's shared libraries other than Python extension modules (lib*.so*, or any *.so.N), as ELF files."""
    found = []
    for rel, path in files.items():
        name = rel.rsplit("/", 1)[-1]
        if (fnmatch.fnmatch(name, "lib*.so*") or re.search(r"\.so\.\d", name)) and not EXTENSION.search(name) \
                and is_elf(path):
            found.append(rel)
    return sorted(found)


def is_elf(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"
