"""How installer/sbom.py reads a native part's version from the bundle's own files: a version string or a source
path in the binary, a version function called through ctypes, its file name, the compiler note of its .comment
section, its wheel's metadata or the wheel's own SBOM. A probe that finds nothing returns None (sbom_native.py then
stops the build)."""

from __future__ import annotations

import ctypes
import fnmatch
import json
import re
import struct
import sys
import sysconfig
from collections.abc import Callable, Iterator
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import NamedTuple


class ProbeError(Exception):
    """A version the build cannot read from the bundle, or a part of the bundle this SBOM does not know."""


class Found(NamedTuple):
    version: str
    technique: str  # CycloneDX evidence technique: how the version was read
    detail: str  # what was read, and where
    confidence: float = 1.0


# A probe reads a version from a component's files (real paths, links resolved); `known` has the versions found so
# far (its container's among them). It returns None when the files do not say.
Probe = Callable[[list[Path], dict[str, str]], Found | None]


# ---------------------------------------------------------------------------------------------------------------
# Reading the files


@cache
def data_of(path: Path) -> bytes:
    return path.read_bytes()


def elf_sections(path: Path) -> dict[str, bytes]:
    """Name → contents of the sections of a 64-bit little-endian ELF file (the bundle's are x86-64)."""
    data = data_of(path)
    if data[:4] != b"\x7fELF":
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    size, count, names = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * size) for i in range(count)]
    strings = data[headers[names][4]:headers[names][4] + headers[names][5]]
    return {strings[h[0]:strings.index(b"\0", h[0])].decode(): data[h[4]:h[4] + h[5]] for h in headers}


def build_id(path: Path) -> bytes:
    note = elf_sections(path).get(".note.gnu.build-id", b"")
    return note[16:]  # after namesz, descsz, type and "GNU\0"


def pick(files: list[Path], where: str) -> list[Path]:
    return [f for f in files if fnmatch.fnmatch(f.name, where)]


def unique(values: set[str], what: str) -> str | None:
    if len(values) > 1:
        raise ProbeError(f"{what}: more than one version found ({', '.join(sorted(values))})")
    return next(iter(values), None)


# ---------------------------------------------------------------------------------------------------------------
# Probes: each returns a Probe


def text(pattern: bytes, where: str = "*", present: bytes | None = None,
         form: Callable[[re.Match[bytes]], str] = lambda m: m.group(1).decode()) -> Probe:
    """A version string in the binary (one value however often it occurs); `present`: a mark that must be there too,
    which shows the part is compiled in."""
    regex = re.compile(pattern)

    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        chosen = pick(files, where)
        if present and not any(present in data_of(f) for f in chosen):
            return None
        found = {form(m): (f.name, m.group()) for f in chosen for m in regex.finditer(data_of(f)) if not inside_number(m)}
        version = unique(set(found), f"{pattern!r} in {', '.join(f.name for f in chosen)}")
        if not version:
            return None
        name, raw = found[version]
        return Found(version, "binary-analysis", f"{raw.replace(bytes(1), b' ').strip().decode('latin-1')!r} in {name}")
    return probe


def inside_number(match: re.Match[bytes]) -> bool:
    """Whether a version found is the end of a longer number (patterns start with a literal, which keeps them fast,
    rather than with a look-behind)."""
    start = match.start(1) if match.re.groups else match.start()
    return re.fullmatch(rb"[0-9.]", match.string[start - 1:start]) is not None


def call(symbol: str, restype: type = ctypes.c_char_p, form: Callable[[object], str] = lambda v: v.decode(),
         where: str = "*") -> Probe:
    """The library's own version function, called through ctypes."""
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        for path in pick(files, where):
            function = getattr(ctypes.CDLL(str(path)), symbol)
            function.restype, function.argtypes = restype, []
            return Found(form(function()), "dynamic-analysis", f"{symbol}() of {path.name}")
        return None
    return probe


def icu_version(files: list[Path], known: dict[str, str]) -> Found | None:
    """u_getVersion() of libicuuc (ICU suffixes its symbols with the major version, from the file name)."""
    for path in pick(files, "libicuuc.so.*"):
        major = path.name.rsplit(".", 1)[1]
        buffer = (ctypes.c_uint8 * 4)()
        getattr(ctypes.CDLL(str(path)), f"u_getVersion_{major}")(buffer)
        parts = list(buffer)
        while len(parts) > 2 and parts[-1] == 0:
            parts.pop()
        return Found(".".join(map(str, parts)), "dynamic-analysis", f"u_getVersion_{major}() of {path.name}")
    return None


def file_name(pattern: str) -> Probe:
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        versions = {m.group(1): f.name for f in files if (m := re.search(pattern, f.name))}
        version = unique(set(versions), pattern)
        return Found(version, "filename", versions[version]) if version else None
    return probe


def hb_version(where: str) -> Probe:
    """HarfBuzz compiled into a library that exports none of its functions: hb_version()'s code (three stores of
    major, minor, micro, then ret, as GCC compiles it for x86-64), checked against the version string it carries."""
    code = re.compile(rb"\xc7\x07(....)\xc7\x06(....)\xc7\x02(....)\xc3", re.DOTALL)

    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        for path in pick(files, where):
            data = data_of(path)
            found = {".".join(str(int.from_bytes(g, "little")) for g in m.groups()) for m in code.finditer(data)}
            found = {v for v in found if b"\0" + v.encode() + b"\0" in data}
            version = unique(found, f"hb_version() in {path.name}")
            if version:
                return Found(version, "binary-analysis", f"hb_version() and the string {version!r} in {path.name}")
        return None
    return probe


def srcdir(name: str) -> Probe:
    """The version in the path of a source tree compiled in: a meson subproject (subprojects/glib-2.88.1/)."""
    return text(rb"subprojects/" + re.escape(name.encode()) + rb"-(\d[\w.]*?)/")


def vcpkg(port: str) -> Probe:
    """The version in the path of a vcpkg source tree compiled in (buildtrees/abseil/src/20250814.0-66199c4c73.clean/:
    the release tag, or the commit where the port builds one)."""
    return text(rb"/buildtrees/" + re.escape(port.encode()) + rb"/src/v?(\w[\w.-]*?)-[0-9a-f]{10}\.clean/")


def wheel_sbom(dist: str) -> Iterator[tuple[str, dict]]:
    """The components of the SBOMs a wheel carries (<dist-info>/sboms/*.cdx.json, written by its build), with the
    SBOM's path."""
    for file in distribution(dist).files or []:
        if "/sboms/" in file.as_posix() and file.name.endswith(".json"):
            for comp in json.loads(file.read_text(encoding="utf-8")).get("components", []):
                yield file.as_posix(), comp


def in_wheel_sbom(dist: str, name: str) -> Probe:
    """The version the wheel's own SBOM gives the part."""
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        for where, comp in wheel_sbom(dist):
            if comp.get("name") == name and comp.get("version"):
                return Found(comp["version"], "manifest-analysis", f"{where} of the {dist} wheel")
        return None
    return probe


def container(label: str, present: bytes | None = None, key: str = "") -> Probe:
    """For a part whose version its binary does not record (header-only, or its version string not linked in): the
    identity of what compiles it in, e.g. 'onnxruntime-1.32.0' (its release notes or sources name the exact one).
    `present`: a mark of the part in the binary (a type name, a message), which must be there."""
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        version = known.get(key or label) or version_of(label)
        if not version or (present and not any(present in data_of(f) for f in files)):
            return None
        return Found(f"{label}-{version}", "other", f"not recorded in {', '.join(sorted({f.name for f in files}))}: "
                     f"the one {label} {version} compiles in", 0.5)
    return probe


def interpreter(files: list[Path], known: dict[str, str]) -> Found | None:
    """The running interpreter's version where the bundle's libpython is its own (same GNU build ID)."""
    mine = Path(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or "")
    for path in pick(files, "libpython3*"):
        if mine.is_file() and build_id(path) and build_id(path) == build_id(mine.resolve()):
            return Found(sys.version.split()[0], "hash-comparison", f"build ID of {path.name} = {mine}'s")
    return None


def metadata(name: str) -> Probe:
    """The version of a distribution installed in the build venv (where the bundle was made from)."""
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        version = version_of(name)
        return Found(version, "manifest-analysis", f"{name}'s metadata in {sys.prefix}") if version else None
    return probe


def given(found: Found | None) -> Probe:
    return lambda files, known: found


def first(*probes: Probe) -> Probe:
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        return next((found for p in probes if (found := p(files, known))), None)
    return probe


def version_of(name: str) -> str | None:
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return None


def dotted(number: int, *shifts: tuple[int, int]) -> str:
    return ".".join(str((number >> shift) & mask) for shift, mask in shifts)
