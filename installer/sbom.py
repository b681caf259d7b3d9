"""Complete the CycloneDX bill of materials of the bundle: the Python packages as cyclonedx-py wrote them from the
lock file (kept only where the bundle carries them), plus the parts no Python metadata describes: CPython, Qt and
the libraries compiled into it, OpenCV and each codec compiled in, what ONNX Runtime and OpenSlide embed.

Usage: sbom.py BASE_JSON OUT_JSON [OPENCV_BUILD_DIR]   (BASE_JSON: cyclonedx-py requirements installer/requirements-linux.lock)
"""

from __future__ import annotations

import json
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import bundle_licences as bl
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# ONNX Runtime's ThirdPartyNotices.txt names what its library links in statically; curl and mbedtls serve only its
# telemetry uploader, which SlideTally never enables (the app opens no network connection).
ONNXRUNTIME_EMBEDS = ("abseil-cpp", "protobuf", "onnx", "eigen", "flatbuffers", "re2", "safeint", "microsoft-gsl",
                      "nlohmann-json", "date", "mp11", "cpuinfo", "pytorch-cpuinfo", "curl", "mbedtls")
QT_EMBEDS = {"icu": "ICU", "harfbuzz": "MIT", "libpng": "Libpng", "freetype": "FTL OR GPL-2.0-or-later",
             "pcre2": "BSD-3-Clause", "md4c": "MIT", "double-conversion": "BSD-3-Clause", "libb2": "CC0-1.0",
             "zlib": "Zlib"}
CODECS = {"libjpeg-turbo": ("JPEG", "IJG AND BSD-3-Clause AND Zlib"), "libpng": ("PNG", "Libpng"),
          "libtiff": ("TIFF", "libtiff")}


def part(name: str, version: str | None, licence: str | None, kind: str = "library", parent: str = "",
         **extra: object) -> dict:
    comp: dict = {"type": kind, "bom-ref": f"{parent}/{name}" if parent else f"native:{name}", "name": name, **extra}
    if version:
        comp["version"] = version
    if licence:
        comp["licenses"] = [{"expression": licence}]
    return comp


def version_of(name: str) -> str | None:
    try:
        return distribution(name).version
    except PackageNotFoundError:
        return None


def codec_versions(opencv_build: Path | None) -> dict[str, str | None]:
    """Versions from OpenCV's CMake summary (e.g. 'JPEG:  build-libjpeg-turbo (ver 3.1.2-70)')."""
    log = opencv_build / "configure.log" if opencv_build else None
    text = log.read_text(encoding="utf-8", errors="replace") if log and log.exists() else ""
    found = {}
    for codec, (label, _) in CODECS.items():
        match = re.search(rf"^\s*{label}:.*\(ver ([^)]+)\)", text, re.MULTILINE)
        found[codec] = match.group(1) if match else None
    return found


def native_parts(opencv_build: Path | None) -> list[dict]:
    qt = version_of("PySide6-Essentials")
    opencv = opencv_build.name.split("-")[1] if opencv_build else version_of("opencv-python-headless")
    openslide_bin = distribution("openslide-bin")
    embedded = sorted({f.parts[-2] for f in openslide_bin.files or [] if "licenses/licenses/" in f.as_posix()})
    versions = codec_versions(opencv_build)
    return [
        part("cpython", sys.version.split()[0], "PSF-2.0", "platform", purl=f"pkg:generic/cpython@{sys.version.split()[0]}",
             description="Python runtime taken from the build machine; expat, libffi, sqlite inside its modules"),
        part("qt", qt, "LGPL-3.0-only", "framework", description="Qt 6 shared libraries in the PySide6 wheel",
             components=[part(n, None, lic, parent="qt") for n, lic in QT_EMBEDS.items()]),
        part("opencv", opencv, "Apache-2.0", description="core, imgproc, imgcodecs built from source by build_opencv.sh",
             components=[part(c, versions[c], lic, parent="opencv") for c, (_, lic) in CODECS.items()]),
        part("onnxruntime-native", version_of("onnxruntime"), "MIT", description="onnxruntime_pybind11_state.so",
             components=[part(n, None, None, parent="onnxruntime") for n in ONNXRUNTIME_EMBEDS]),
        part("openslide", openslide_bin.version, "LGPL-2.1-only", description="libopenslide.so.1 from openslide-bin",
             components=[part(n, None, None, parent="openslide") for n in embedded if n != "OpenSlide"]),
        part("pyinstaller-bootloader", version_of("pyinstaller"), "GPL-2.0-or-later WITH Bootloader-exception",
             "application", description="the start of both programs, compiled from this release's source (build_bootloader.sh)"),
    ]


def complete(base: dict, opencv_build: Path | None, version: str) -> dict:
    bundled = {canonicalize_name(n) for n in bl.runtime_distributions(ROOT / "pyproject.toml") + list(bl.BUILD_BUNDLED)}
    python = [c for c in base.get("components", []) if canonicalize_name(c["name"]) in bundled]
    for comp in python:  # metadata that names no licence: what its text says (installer/bundle_licences.py)
        if not comp.get("licenses") and canonicalize_name(comp["name"]) in bl.LICENCE:
            comp["licenses"] = [{"expression": bl.LICENCE[canonicalize_name(comp["name"])]}]
    bom = dict(base)
    bom["metadata"] = dict(base.get("metadata", {}),
                           component=part("slidetally", version, "MIT", "application", purl=f"pkg:generic/slidetally@{version}"))
    bom["components"] = python + native_parts(opencv_build)
    refs = {c["bom-ref"] for c in python}
    bom["dependencies"] = [d for d in base.get("dependencies", []) if d.get("ref") in refs]
    return bom


def main(base: str, out: str, opencv_build: str | None = None) -> None:
    version = __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    bom = complete(json.loads(Path(base).read_text(encoding="utf-8")), Path(opencv_build) if opencv_build else None,
                   version)
    Path(out).write_text(json.dumps(bom, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"sbom: {len(bom['components'])} components written to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
