"""What the bundle carries beyond Python packages, for installer/sbom.py: each native part with its licence, the
bundle files it covers and the probe that reads its version (sbom_probes.py); what OpenSlide and OpenCV compile in,
and the wheels whose own SBOM lists what their extension module does."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from sbom_probes import (
    Probe,
    call,
    container,
    dotted,
    file_name,
    first,
    hb_version,
    icu_version,
    in_wheel_sbom,
    interpreter,
    metadata,
    srcdir,
    text,
    vcpkg,
)

PROGRAM = "slidetally"  # the bundle's executable; slidetally-cli is a link to it (installer/launch.py)


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
    # No NumPy part: NumPy is built from source against Debian's OpenBLAS (build_numpy.sh), a system library and a
    # Depends like libc, not listed here; the wheel's numpy.libs (OpenBLAS, libgfortran, libquadmath) is not bundled,
    # and a bundle that carried it again fails --check.
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
