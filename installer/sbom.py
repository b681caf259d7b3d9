"""Complete the CycloneDX bill of materials of the bundle: the Python packages as cyclonedx-py wrote them from the
build venv (kept only where the bundle carries them), plus the parts no Python metadata describes: CPython, Qt, OpenCV,
ONNX Runtime, OpenSlide, the libraries of the NumPy and Pillow wheels, and what each of them compiles in.

Every native part is read from the bundle itself. Its version comes from its own files (a version string, a source
path or a compiler note in the binary, a version function called through ctypes, its file name) or from its wheel's
metadata, never from a table of numbers, so a lock update cannot leave one stale; a probe that finds nothing stops
the build. Each component lists the bundle files it covers (evidence.occurrences, paths from the bundle's root);
`--check` fails when a shared library of the bundle is named by no component, or a component has no version.

Usage: sbom.py BASE_JSON OUT_JSON OPENCV_BUILD_DIR BUNDLE_DIR   (BASE_JSON: cyclonedx-py's SBOM of the build venv)
       sbom.py --check BUNDLE_DIR SBOM_JSON
"""

from __future__ import annotations

import ctypes
import fnmatch
import json
import marshal
import os
import re
import struct
import sys
import sysconfig
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import NamedTuple

import bundle_licences as bl
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = "slidetally"  # the bundle's executable; slidetally-cli is a link to it (installer/launch.py)
EXTENSION = re.compile(r"\.(cpython-\d+[^/]*|abi3)\.so$")  # a Python extension module, named by its distribution


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


def gcc_comment(where: str = "*") -> Probe:
    """The GCC named in the library's .comment section ('GCC: (GNU) 10.2.1'); the newest where several built it."""
    def probe(files: list[Path], known: dict[str, str]) -> Found | None:
        for path in pick(files, where):
            comment = elf_sections(path).get(".comment", b"")
            versions = re.findall(rb"GCC: \([^)]*\) (\d+\.\d+\.\d+)", comment)
            if versions:
                best = max(versions, key=lambda v: tuple(map(int, v.split(b"."))))
                return Found(best.decode(), "binary-analysis", f".comment of {path.name}")
        return None
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


# ---------------------------------------------------------------------------------------------------------------
# What the bundle carries beyond Python packages


@dataclass(frozen=True)
class Native:
    name: str
    licence: str
    files: tuple[str, ...]  # patterns of the files it covers, from the bundle's root; '*' spans folders
    probe: Probe
    parent: str = ""  # the part whose binary compiles it in ("": a part of its own)
    origin: str = ""  # where a part of its own comes from, when its name alone is not unique (a wheel)
    description: str = ""
    kind: str = "library"


IN = "_internal/"  # what PyInstaller puts beside the program
QT_CORE, QT_GUI = (IN + "*libQt6Core.so.*",), (IN + "*libQt6Gui.so.*",)
# The wheel's libonnxruntime.so is not bundled where the Python module alone is used: the module links ONNX Runtime in.
ORT, ORT_NAME = (IN + "*libonnxruntime.so.*", IN + "*onnxruntime/capi/onnxruntime_pybind11*.so"), "onnxruntime-native"
SLIDE = (IN + "*libopenslide.so.*",)
PIL_LIBS = "the Pillow wheel's pillow.libs/"
SQLITE = text(rb"(3\.\d\d\.\d+)\x00", present=b"SQLite format 3")  # sqlite3_version[], beside no other 3.x.y
CPYTHON = Native(
    "cpython", "PSF-2.0", (IN + "libpython3*", IN + "python3.*/lib-dynload/*", IN + "base_library.zip"),
    first(text(rb"\x00(3\.\d+\.\d+)\x00%\.80s \(%\.80s\) %\.80s\x00", where="libpython3*"), interpreter),
    description="CPython runtime: libpython, its extension modules and the standard library (base_library.zip)",
    kind="platform")
NATIVE = (
    CPYTHON,
    Native("libmpdec", "BSD-2-Clause", (IN + "python3.*/lib-dynload/_decimal.*",),
           text(rb"\x00(\d+\.\d+\.\d+)\x00", present=rb"Modules/_decimal/libmpdec/"), parent="cpython",
           description="compiled into the _decimal module"),
    # Qt from the PySide6-Essentials wheel. Its zlib and FreeType are the system's (libz.so.1, libfreetype.so.6 are
    # among libQt6Core's and libQt6Gui's NEEDED), left out of the bundle like every system library: not listed here.
    Native("qt", "LGPL-3.0-only", (IN + "*libQt6*.so*", IN + "*PySide6/Qt/plugins/*.so"),
           text(rb"\x00(\d+\.\d+\.\d+)\x00", where="libQt6Core.so.*"), kind="framework",
           description="Qt 6 libraries and plugins of the PySide6-Essentials wheel"),
    Native("icu", "ICU", (IN + "*libicu*.so*",), icu_version, parent="qt", description="Qt's ICU, its own libraries"),
    Native("harfbuzz", "MIT", QT_GUI, hb_version("libQt6Gui.so.*"), parent="qt"),
    Native("libpng", "libpng-2.0", QT_GUI, text(rb"libpng version (\d+\.\d+\.\d+)"), parent="qt"),
    Native("pcre2", "BSD-3-Clause", QT_CORE, text(rb"\x00(10\.\d+) \d{4}-\d\d-\d\d\x00"), parent="qt"),
    Native("md4c", "MIT", QT_GUI, container("qt", b"mity/md4c"), parent="qt"),
    Native("double-conversion", "BSD-3-Clause", QT_CORE, container("qt"), parent="qt"),
    Native("libb2", "CC0-1.0", QT_CORE, container("qt"), parent="qt"),
    Native(ORT_NAME, "MIT", (IN + "*libonnxruntime*.so*", IN + "*onnxruntime/capi/onnxruntime_pybind11*.so"),
           first(file_name(r"libonnxruntime\.so\.(\d+\.\d+\.\d+)$"), metadata("onnxruntime")),
           description="ONNX Runtime: libonnxruntime, its providers' loader and the Python module linking it in"),
    # What ThirdPartyNotices.txt names and the binary shows (probed in libonnxruntime; the Python module carries the
    # same). curl, mbedtls, sqlite, zlib and cpp_client_telemetry serve only its telemetry uploader, which SlideTally
    # never enables (the app opens no network connection).
    Native("abseil-cpp", "Apache-2.0", ORT, vcpkg("abseil"), parent=ORT_NAME),
    Native("protobuf", "BSD-3-Clause", ORT, vcpkg("protobuf"), parent=ORT_NAME),
    Native("onnx", "Apache-2.0", ORT, vcpkg("onnx"), parent=ORT_NAME),
    Native("re2", "BSD-3-Clause", ORT, vcpkg("re2"), parent=ORT_NAME),
    Native("mbedtls", "Apache-2.0 OR GPL-2.0-or-later", ORT, vcpkg("mbedtls"), parent=ORT_NAME),
    Native("curl", "curl", ORT, text(rb"libcurl (\d+\.\d+\.\d+)\r\n"), parent=ORT_NAME),
    Native("nlohmann-json", "MIT", ORT, text(rb"nlohmann::json_abi_v(\d+)_(\d+)_(\d+)::",
                                             form=lambda m: ".".join(g.decode() for g in m.groups())),
           parent=ORT_NAME),
    Native("sqlite", "blessing", ORT, SQLITE, parent=ORT_NAME),
    Native("zlib", "Zlib", ORT, text(rb"\x00(1\.\d\.\d+)\x00", present=b"incorrect header check"),
           parent=ORT_NAME),
    Native("cpp_client_telemetry", "Apache-2.0", ORT, text(rb"-C\+\+-No-(\d+(?:\.\d+)+)"), parent=ORT_NAME),
    # Header-only, or without a version string: the marks show they are compiled in (type names, messages).
    Native("eigen", "MPL-2.0", ORT, container("onnxruntime", b"5Eigen", ORT_NAME), parent=ORT_NAME),
    Native("flatbuffers", "Apache-2.0", ORT, container("onnxruntime", b"11flatbuffers", ORT_NAME), parent=ORT_NAME),
    Native("safeint", "MIT", ORT, container("onnxruntime", b"SafeIntOnOverflow", ORT_NAME), parent=ORT_NAME),
    Native("microsoft-gsl", "MIT", ORT, container("onnxruntime", b"3gsl4span", ORT_NAME), parent=ORT_NAME),
    Native("date", "MIT", ORT, container("onnxruntime", None, ORT_NAME), parent=ORT_NAME),
    Native("mp11", "BSL-1.0", ORT, container("onnxruntime", b"5boost4mp11", ORT_NAME), parent=ORT_NAME),
    Native("cpuinfo", "BSD-2-Clause", ORT, container("onnxruntime", b"cpuinfo_initialize", ORT_NAME), parent=ORT_NAME,
           description="pytorch/cpuinfo"),
    Native("openslide", "LGPL-2.1-only", SLIDE, call("openslide_get_version"),
           description="libopenslide.so.1 of the openslide-bin wheel, with the libraries it links in statically"),
    # NumPy's wheel: OpenBLAS and the Fortran runtime it needs.
    Native("openblas", "BSD-3-Clause", (IN + "*libscipy_openblas*",), text(rb"OpenBLAS (\d+(?:\.\d+)+)"), origin="numpy",
           description="numpy.libs/ of the NumPy wheel (scipy-openblas build)"),
    Native("libgfortran", "GPL-3.0-or-later WITH GCC-exception-3.1", (IN + "*libgfortran*",),
           first(gcc_comment(), container("numpy")), origin="numpy", description="numpy.libs/ of the NumPy wheel"),
    Native("libquadmath", "LGPL-2.1-or-later", (IN + "*libquadmath*",), first(gcc_comment(), container("numpy")),
           origin="numpy", description="numpy.libs/ of the NumPy wheel"),
    # Pillow's wheel (the bundle keeps the libraries of PIL._imaging and ImageCms; the others if a spec change
    # brings them).
    Native("libjpeg-turbo", "IJG AND BSD-3-Clause AND Zlib", (IN + "*libjpeg-*.so*",),
           text(rb"libjpeg-turbo version (\d+(?:\.\d+)+)"), origin="pillow", description=PIL_LIBS),
    Native("openjpeg", "BSD-2-Clause", (IN + "*libopenjp2-*.so*",), call("opj_version"), origin="pillow",
           description=PIL_LIBS),
    Native("libtiff", "libtiff", (IN + "*libtiff-*.so*",), text(rb"LIBTIFF, Version (\d+\.\d+\.\d+)"), origin="pillow",
           description=PIL_LIBS),
    Native("lcms2", "MIT", (IN + "*liblcms2-*.so*",),
           call("cmsGetEncodedCMMversion", ctypes.c_int, lambda v: f"{v // 1000}.{v % 1000 // 10}"), origin="pillow",
           description=PIL_LIBS),
    Native("xz", "0BSD", (IN + "*liblzma-*.so*",), call("lzma_version_string"), origin="pillow",
           description=PIL_LIBS + " (liblzma)"),
    Native("zstd", "BSD-3-Clause OR GPL-2.0-only", (IN + "*libzstd-*.so*",), call("ZSTD_versionString"), origin="pillow",
           description=PIL_LIBS),
    Native("libxcb", "MIT", (IN + "*libxcb-*.so*",), in_wheel_sbom("pillow", "libxcb"), origin="pillow",
           description=PIL_LIBS),
    Native("libXau", "MIT", (IN + "*libXau-*.so*",), text(rb"libXau\.so\.[\d.]+-(\d+\.\d+\.\d+)-"), origin="pillow",
           description=PIL_LIBS + " (from AlmaLinux 8, named by its debug link)"),
    Native("libpng", "libpng-2.0", (IN + "*libpng16-*.so*",), text(rb"libpng version (\d+\.\d+\.\d+)"), origin="pillow",
           description=PIL_LIBS),
    Native("freetype", "FTL OR GPL-2.0-or-later", (IN + "*libfreetype-*.so*",), in_wheel_sbom("pillow", "FreeType"),
           origin="pillow", description=PIL_LIBS),
    Native("harfbuzz", "MIT", (IN + "*libharfbuzz-*.so*",), call("hb_version_string"), origin="pillow",
           description=PIL_LIBS),
    Native("brotli", "MIT", (IN + "*libbrotli*-*.so*",),
           call("BrotliDecoderVersion", ctypes.c_uint32, lambda v: dotted(v, (24, 0xFFF), (12, 0xFFF), (0, 0xFFF)),
                where="libbrotlidec-*"), origin="pillow", description=PIL_LIBS),
    Native("libwebp", "BSD-3-Clause", (IN + "*libwebp*-*.so*", IN + "*libsharpyuv-*.so*"),
           call("WebPGetDecoderVersion", ctypes.c_int, lambda v: dotted(v, (16, 0xFF), (8, 0xFF), (0, 0xFF)),
                where="libwebp-*"), origin="pillow", description=PIL_LIBS + " (with libsharpyuv)"),
    Native("libavif", "BSD-2-Clause", (IN + "*libavif-*.so*",), call("avifVersion"), origin="pillow",
           description=PIL_LIBS),
    Native("pyinstaller-bootloader", "GPL-2.0-or-later WITH Bootloader-exception", (PROGRAM, PROGRAM + "-cli"),
           metadata("pyinstaller"), kind="application",
           description="the start of both programs, compiled from this release's source (build_bootloader.sh)"),
)
# OpenSlide's libraries, by the name of their licence folder in openslide-bin's dist-info (licenses/licenses/<name>/):
# licence, probe. A folder not named here stops the build.
OPENSLIDE_PARTS: dict[str, tuple[str, Probe]] = {
    "cairo": ("LGPL-2.1-only OR MPL-1.1", srcdir("cairo")),
    "glib": ("LGPL-2.1-or-later", srcdir("glib")),
    "libdicom": ("MIT", srcdir("libdicom")),
    "libjpeg-turbo": ("IJG AND BSD-3-Clause AND Zlib", text(rb"libjpeg-turbo version (\d+(?:\.\d+)+)")),
    "libpng": ("libpng-2.0", text(rb"\x00(1\.6\.\d+)\x00")),
    "libtiff": ("libtiff", srcdir("tiff")),
    "libxml2": ("MIT", text(rb"\x00([1-9])(\d\d)(\d\d)\x00", form=lambda m: ".".join(str(int(g)) for g in m.groups()))),
    "pixman": ("MIT", srcdir("pixman")),
    "SQLite": ("blessing", SQLITE),
    "zlib-ng": ("Zlib", srcdir("zlib-ng")),
    "OpenJPEG": ("BSD-2-Clause", container("openslide-bin")),
    "Zstandard": ("BSD-3-Clause OR GPL-2.0-only", container("openslide-bin")),
    "libffi": ("MIT", container("openslide-bin")),
    "uthash": ("BSD-1-Clause", container("openslide-bin")),
}
# What OpenCV compiles in (built from source by build_opencv.sh): by the prefix of the licence texts its build
# installs (licenses/3rdparty/<name>-<file>) and the line of its build summary naming a version (the text
# getBuildInformation() returns, in cv2 and in configure.log). A licence text no entry names stops the build.
OPENCV_PARTS: dict[str, tuple[str, str | None]] = {
    "libjpeg-turbo": ("IJG AND BSD-3-Clause AND Zlib", "JPEG"),
    "libpng": ("libpng-2.0", "PNG"),
    "libtiff": ("libtiff", "TIFF"),
    "harfbuzz": ("MIT", "HarfBuzz"),
    "softfloat": ("BSD-3-Clause", None),
    "dlpack": ("Apache-2.0", None),
}
# Fonts OpenCV 5 compiles in for putText (gzip members in cv2, e.g. Rubik.ttf; their licence texts are fonts-<file>).
FONTS = {"Rubik": "OFL-1.1", "Rubik-Italic": "OFL-1.1"}
# Python distributions whose extension module compiles libraries in, as the wheel's own SBOM lists them.
WHEEL_EMBEDS = {"onnx": IN + "onnx/onnx_cpp2py_export.*.so"}
SBOM_FIELDS = ("type", "name", "version", "purl", "licenses", "hashes", "externalReferences")
CV2 = (IN + "cv2/*.so", IN + "cv2.*.so")  # the extension module of the build, where PyInstaller puts it


# ---------------------------------------------------------------------------------------------------------------
# The bundle's files


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


# ---------------------------------------------------------------------------------------------------------------
# Components


def part(name: str, version: str | None, licence: str | None, kind: str = "library", ref: str = "",
         **extra: object) -> dict:
    comp: dict = {"type": kind, "bom-ref": ref or f"native:{name}", "name": name, **extra}
    if version:
        comp["version"] = version
    if licence:
        comp["licenses"] = [{"expression": licence}]
    return comp


def evidence(locations: list[str], found: Found | None = None) -> dict:
    ev: dict = {}
    if found:
        ev["identity"] = [{"field": "version", "confidence": found.confidence, "concludedValue": found.version,
                           "methods": [{"technique": found.technique, "confidence": found.confidence,
                                        "value": found.detail}]}]
    ev["occurrences"] = [{"location": loc} for loc in sorted(locations)]
    return ev


@dataclass
class Assembly:
    """The bundle's files, the versions read so far (by component name), and the components whose version could not
    be read."""
    files: dict[str, Path]
    known: dict[str, str]
    missing: list[str]

    def make(self, native: Native, ref: str, files: dict[str, Path] | None = None) -> dict | None:
        """The component of a native part the bundle carries (None where none of its files is there)."""
        files = matching(self.files, native.files) if files is None else files
        if not files:
            return None
        found = native.probe(real(files), self.known)
        if not found:
            self.missing.append(f"{ref} ({', '.join(sorted(files))})")
        extra = {"description": native.description} if native.description else {}
        return part(native.name, found.version if found else None, native.licence, native.kind, ref,
                    **extra, evidence=evidence(list(files), found))


def add(parent: dict | None, child: dict | None) -> None:
    if parent is not None and child is not None:
        parent.setdefault("components", []).append(child)


def native_parts(files: dict[str, Path], opencv_build: Path | None) -> list[dict]:
    """The native components the bundle carries, each with what it compiles in; ProbeError names every version that
    could not be read."""
    made = Assembly(files, {}, [])
    tops: dict[str, dict] = {}
    for native in NATIVE:
        if native.parent:
            parent = tops.get(f"native:{native.parent}")
            add(parent, made.make(native, f"{native.parent}/{native.name}") if parent else None)
            continue
        ref = f"native:{native.origin}/{native.name}" if native.origin else f"native:{native.name}"
        comp = made.make(native, ref)
        if comp:
            tops[ref] = comp
            if not native.origin:
                made.known[native.name] = comp.get("version", "")
    for comp in openslide_parts(made):
        add(tops.get("native:openslide"), comp)
    opencv = opencv_part(made, opencv_build)
    if made.missing:
        raise ProbeError("no version found in the bundle for: " + "; ".join(made.missing))
    return list(tops.values()) + ([opencv] if opencv else [])


def openslide_parts(made: Assembly) -> list[dict]:
    """What libopenslide.so.1 links in: the folders of openslide-bin's licence texts name them."""
    files = matching(made.files, SLIDE)
    if not files:
        return []
    dist = distribution("openslide-bin")
    names = sorted({f.parts[-2] for f in dist.files or [] if "licenses/licenses/" in f.as_posix()} - {"OpenSlide"})
    unknown = [n for n in names if n not in OPENSLIDE_PARTS]
    if unknown:
        raise ProbeError(f"openslide-bin {dist.version} links in {', '.join(unknown)} (its licenses/licenses/ "
                         f"folders): add them to OPENSLIDE_PARTS in installer/sbom.py")
    natives = [Native(n, OPENSLIDE_PARTS[n][0], SLIDE, OPENSLIDE_PARTS[n][1]) for n in names]
    return [c for native in natives if (c := made.make(native, f"openslide/{native.name}", files))]


# ---------------------------------------------------------------------------------------------------------------
# OpenCV


def build_summary(binary: list[Path], opencv_build: Path | None) -> str:
    """OpenCV's build summary: getBuildInformation()'s text in cv2 (always compiled in), else configure.log."""
    for path in binary:
        data = data_of(path)
        start = data.find(b"General configuration for OpenCV")
        if start >= 0:
            return data[start:data.index(b"\0", start)].decode(errors="replace")
    log = opencv_build / "configure.log" if opencv_build else None
    return log.read_text(encoding="utf-8", errors="replace") if log and log.exists() else ""


def summary_line(summary: str, label: str) -> str | None:
    """The value of a line of the summary; CMake's log prefixes each line with '-- '."""
    match = re.search(rf"^(?:--)?\s*{re.escape(label)}:[ \t]+(\S.*)$", summary, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


def codec_versions(summary: str) -> dict[str, str | None]:
    """Version of each part OpenCV builds from its 3rdparty/ ('JPEG: build-libjpeg-turbo (ver 3.1.2-70)',
    'TIFF: build (ver 42 - 4.7.2)', 'HarfBuzz: build (14.2.1)'); None where the summary names none, or names a
    library of the system."""
    found: dict[str, str | None] = {}
    for name, (_, label) in OPENCV_PARTS.items():
        line = summary_line(summary, label) if label else None
        versions = re.findall(r"\d+(?:\.\d+)+", line.rsplit("(", 1)[-1]) if line and line.startswith("build") else []
        found[name] = versions[-1] if versions else None
    return found


def licensed_parts(opencv_build: Path | None) -> set[str]:
    """The parts OpenCV's build installed a licence text for (licenses/3rdparty/<part>-<file>); 'fonts' for the
    fonts' texts."""
    folder = opencv_build / "licenses" / "3rdparty" if opencv_build else None
    names = sorted(p.name for p in folder.iterdir()) if folder and folder.is_dir() else []
    parts = {next((key for key in (*OPENCV_PARTS, "fonts") if n.lower().startswith(key.lower() + "-")), n) for n in names}
    unknown = sorted(parts - set(OPENCV_PARTS) - {"fonts"})
    if unknown:
        raise ProbeError(f"OpenCV's build installs the licence texts {', '.join(unknown)} ({folder}) of parts this "
                         f"SBOM does not list: add them to OPENCV_PARTS in installer/sbom.py")
    return parts


def fonts(binary: list[Path]) -> dict[str, Found | None]:
    """Fonts compiled into cv2 as gzip members (e.g. 'Rubik.ttf'), with the version their name table gives."""
    found: dict[str, Found | None] = {}
    for path in binary:
        data = data_of(path)
        for match in re.finditer(rb"\x1f\x8b\x08\x08.{6}([\w-]+)\.[ot]tf\x00", data, re.DOTALL):
            version = font_version(zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[match.end():]))
            name = match.group(1).decode()
            found[name] = Found(version, "binary-analysis", f"name table of {name} in {path.name}") if version else None
    return found


def font_version(font: bytes) -> str | None:
    """The number in 'Version 2.200' (name ID 5) of a TrueType/OpenType font's name table."""
    count, = struct.unpack_from(">H", font, 4)
    tables = dict(struct.unpack_from(">4s4xI4x", font, 12 + 16 * i) for i in range(count))
    if b"name" not in tables:
        return None
    at = tables[b"name"]
    _, records, strings = struct.unpack_from(">HHH", font, at)
    for r in range(records):
        platform, _, _, name_id, length, offset = struct.unpack_from(">6H", font, at + 6 + 12 * r)
        if name_id == 5:
            raw = font[at + strings + offset:at + strings + offset + length]
            match = re.search(r"\d+(?:\.\d+)+", raw.decode("utf-16-be" if platform in (0, 3) else "latin-1"))
            return match.group() if match else None
    return None


def opencv_probe(name: str, codecs: dict[str, str | None]) -> Probe:
    """A codec's version is in the build summary (a codec without one there is an error); SoftFloat and dlpack do not
    record theirs."""
    label = OPENCV_PARTS[name][1]
    if codecs[name]:
        return given(Found(codecs[name], "binary-analysis", f"'{label}:' line of OpenCV's build summary"))
    return given(None) if label else container("opencv", b"dlpack" if name == "dlpack" else None)


def opencv_part(made: Assembly, opencv_build: Path | None) -> dict | None:
    """OpenCV (cv2, built by build_opencv.sh), with the codecs, HarfBuzz, dlpack and fonts it compiles in."""
    files = matching(made.files, CV2)
    if not files and opencv_build:
        raise ProbeError(f"no cv2 extension module in the bundle ({' or '.join(CV2)}), though {opencv_build} built one")
    if not files:
        return None
    summary = build_summary(real(files), opencv_build)
    number = re.search(r"General configuration for OpenCV (\d+(?:\.\d+)+)", summary)
    found = Found(number.group(1), "binary-analysis", "getBuildInformation() text of cv2") if number else None
    made.known["opencv"] = found.version if found else ""
    source = f"opencv-python-headless {version_of('opencv-python-headless')}"
    comp = made.make(Native("opencv", "Apache-2.0", CV2, given(found), description=f"core, imgproc, imgcodecs built "
                            f"from the {source} source by build_opencv.sh"), "native:opencv", files)
    codecs, licensed, compiled = codec_versions(summary), licensed_parts(opencv_build), fonts(real(files))
    for name in sorted((licensed - {"fonts"}) | {n for n, v in codecs.items() if v}):
        add(comp, made.make(Native(name, OPENCV_PARTS[name][0], CV2, opencv_probe(name, codecs)), f"opencv/{name}", files))
    if "fonts" in licensed and not compiled:
        raise ProbeError(f"OpenCV's build installs a font's licence text, but no font was found in {', '.join(files)}")
    for font, version in sorted(compiled.items()):
        if font not in FONTS:
            raise ProbeError(f"cv2 compiles in the font {font}: add its licence to FONTS in installer/sbom.py")
        add(comp, made.make(Native(font, FONTS[font], CV2, given(version), kind="data",
                                   description="font compiled in for putText"), f"opencv/{font}", files))
    return comp


# ---------------------------------------------------------------------------------------------------------------
# Python distributions


def tops_of(name: str) -> tuple[set[str], list[str]]:
    """A distribution's top-level folders and modules, and the paths of its files (its RECORD)."""
    files = [f.as_posix() for f in distribution(name).files or []]
    tops = {f.split("/")[0] if "/" in f else f.split(".")[0] for f in files}
    tops = {t for t in tops if not t.endswith((".dist-info", ".data")) and t not in ("..", "__pycache__", "bin")}
    return tops, files


def python_evidence(name: str, files: dict[str, Path], folders: set[str], modules: set[str]) -> list[str]:
    """Where the bundle carries a distribution: the program (its modules in the PYZ archive), its folders under
    _internal/, and each of its shared libraries (by its RECORD); empty where the bundle does not carry it."""
    tops, record = tops_of(name)
    found = [PROGRAM] if tops & modules else []
    found += [IN + t for t in sorted(tops & folders)]
    found += [IN + f for f in record if re.match(r"lib.*\.so", f.rsplit("/", 1)[-1]) and IN + f in files]
    return found


def carried(names: list[str], bundle: Path) -> list[str]:
    """The distributions of `names` the bundle carries (copyright.py lists only those, as this SBOM does)."""
    files = bundle_files(bundle)
    modules = pyz_modules(bundle / PROGRAM)
    folders = {rel.split("/")[1] for rel in files if rel.startswith(IN) and rel.count("/") > 1}
    return [name for name in names if python_evidence(name, files, folders, modules)]


def python_parts(base: dict, bundle: Path, files: dict[str, Path]) -> list[dict]:
    """cyclonedx-py's components of the distributions the app runs with, where the bundle carries them."""
    wanted = {canonicalize_name(n) for n in bl.runtime_distributions(ROOT / "pyproject.toml") + list(bl.BUILD_BUNDLED)}
    modules = pyz_modules(bundle / PROGRAM)
    folders = {rel.split("/")[1] for rel in files if rel.startswith(IN) and rel.count("/") > 1}
    kept = []
    for comp in base.get("components", []):
        key = canonicalize_name(comp["name"])
        where = python_evidence(comp["name"], files, folders, modules) if key in wanted else []
        if not where:
            continue  # not a runtime dependency, or one the bundle does not carry (e.g. flatbuffers, onnxruntime's)
        if not comp.get("licenses") and key in bl.LICENCE:  # metadata that names no licence: what its text says
            comp["licenses"] = [{"expression": bl.LICENCE[key]}]
        comp["evidence"] = evidence(where)
        for embed in wheel_embeds(comp, files):
            comp.setdefault("components", []).append(embed)
        kept.append(comp)
    return kept


def wheel_embeds(comp: dict, files: dict[str, Path]) -> list[dict]:
    """What the wheel's SBOM says its extension module compiles in, where the bundle carries that module."""
    pattern = WHEEL_EMBEDS.get(canonicalize_name(comp["name"]))
    where = list(matching(files, (pattern,))) if pattern else []
    return [dict({k: v for k, v in embed.items() if k in SBOM_FIELDS}, **{"bom-ref": f"{comp['name']}/{embed['name']}"},
                 evidence=evidence(where, Found(embed["version"], "manifest-analysis", f"{sbom} of the {comp['name']} wheel")))
            for sbom, embed in (wheel_sbom(comp["name"]) if where else []) if embed.get("version")]


def cpython_pedigree(comp: dict) -> None:
    """The bundle's CPython is Debian's python3.11 source built by build_python.sh, where the version read from
    libpython is the one its lock names (installer/python-source.lock)."""
    lock = (ROOT / "installer" / "python-source.lock").read_text(encoding="utf-8")
    debian = re.search(r"^# version: (\S+)", lock, re.MULTILINE)
    if debian and debian.group(1).split("-")[0] == comp.get("version"):
        comp["purl"] = f"pkg:deb/debian/python3.11@{debian.group(1).replace('+', '%2B')}?arch=source"
        comp["description"] += (f"; Debian's python3.11 {debian.group(1)} source (installer/build_python.sh), "
                                f"linking the system's expat, SQLite, OpenSSL, libffi, zlib, bzip2 and xz (not bundled)")
    else:
        comp["purl"] = f"pkg:generic/cpython@{comp.get('version')}"


def complete(base: dict, opencv_build: Path | None, version: str, bundle: Path) -> dict:
    files = bundle_files(bundle)
    python = python_parts(base, bundle, files)
    native = native_parts(files, opencv_build)
    for comp in native:
        if comp["name"] == "cpython":
            cpython_pedigree(comp)
    bom = dict(base)
    bom["metadata"] = dict(base.get("metadata", {}),
                           component=part("slidetally", version, "MIT", "application", purl=f"pkg:generic/slidetally@{version}"))
    bom["components"] = python + native
    refs = {c["bom-ref"] for c in python}
    bom["dependencies"] = [dict(d, dependsOn=[r for r in d.get("dependsOn", []) if r in refs])
                           for d in base.get("dependencies", []) if d.get("ref") in refs]
    return bom


# ---------------------------------------------------------------------------------------------------------------
# The check


def walk(components: list[dict]) -> Iterator[dict]:
    for comp in components:
        yield comp
        yield from walk(comp.get("components", []))


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


def check(bundle: Path, bom: dict) -> list[str]:
    """What the SBOM misses: each shared library of the bundle no component names (a link counts as named when its
    target is), each component without a version."""
    comps = list(walk(bom.get("components", [])))
    named = {o["location"] for c in comps for o in c.get("evidence", {}).get("occurrences", [])}
    files = bundle_files(bundle)
    root = bundle.resolve()
    problems = []
    for rel in shared_libraries(files):
        target = files[rel].resolve()
        inside = target.relative_to(root).as_posix() if target.is_relative_to(root) else None
        if rel not in named and inside not in named:
            problems.append(f"{rel}: no component names it")
    problems += [f"{c.get('bom-ref', c['name'])}: no version" for c in comps if not c.get("version")]
    return problems


# ---------------------------------------------------------------------------------------------------------------


def main(base: str, out: str, opencv_build: str, bundle: str) -> None:
    version = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    try:
        bom = complete(json.loads(Path(base).read_text(encoding="utf-8")), Path(opencv_build) if opencv_build else None,
                       version, Path(bundle))
    except ProbeError as err:
        sys.exit(f"sbom: {err}")
    Path(out).write_text(json.dumps(bom, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"sbom: {len(bom['components'])} components written to {out}")


def main_check(bundle: str, sbom: str) -> None:
    problems = check(Path(bundle), json.loads(Path(sbom).read_text(encoding="utf-8")))
    for problem in problems:
        print(f"sbom --check: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"sbom --check: every shared library of {bundle} is named in {sbom}, every component has a version")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"] and len(sys.argv) == 4:
        main_check(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] != "--check":
        main(*sys.argv[1:])
    else:
        sys.exit(__doc__)
