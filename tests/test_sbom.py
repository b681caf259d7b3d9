"""The bill of materials installer/sbom.py completes: versions read from the bundle's own files, every shared library
named, only what the bundle carries. The dev venv's installed files stand in for the bundle: a tree of links laid out
as PyInstaller lays out dist/slidetally/, with a program whose PYZ archive lists the app's top-level modules."""

from __future__ import annotations

import _decimal
import importlib.util
import json
import marshal
import platform
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "installer"))
import sbom
import sbom_bundle
import sbom_native
import sbom_probes

SITE = Path(sysconfig.get_paths()["purelib"])
# Where the bundle has what the probes read (under _internal/), and where the dev venv has it.
STAND_IN = {
    "PySide6/Qt/lib": SITE / "PySide6/Qt/lib",
    "numpy/_core": SITE / "numpy/_core",  # NumPy built against Debian's OpenBLAS (build_numpy.sh): no numpy.libs
    "pillow.libs": SITE / "pillow.libs",
    "onnxruntime/capi": SITE / "onnxruntime/capi",
    "openslide_bin": SITE / "openslide_bin",
    "cv2": SITE / "cv2",
    "libpython3.11.so.1.0": Path(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or ""),
    "python3.11/lib-dynload": Path(_decimal.__file__).parent,
    **{f"onnx/{f.name}": f for f in SITE.glob("onnx/onnx_cpp2py_export.*.so")},
}
MODULES = ("numpy", "onnxruntime", "onnx", "fhir", "PIL", "PySide6", "openslide", "openslide_bin")  # not flatbuffers
DISTRIBUTIONS = ("numpy", "onnxruntime", "onnx", "flatbuffers", "fhir.resources", "pandas", "pillow", "openslide-bin",
                 "PySide6-Essentials")
# Each part whose version is read from its files, and the module whose files it is read from (skipped without it).
READ = {
    "native:cpython": "_decimal", "cpython/libmpdec": "_decimal",
    "native:qt": "PySide6", "qt/icu": "PySide6", "qt/harfbuzz": "PySide6", "qt/libpng": "PySide6", "qt/pcre2": "PySide6",
    "native:onnxruntime-native": "onnxruntime",
    **{f"onnxruntime-native/{n}": "onnxruntime" for n in ("abseil-cpp", "protobuf", "onnx", "re2", "mbedtls", "curl",
                                                          "nlohmann-json", "sqlite", "zlib", "cpp_client_telemetry")},
    "native:openslide": "openslide_bin",
    **{f"openslide/{n}": "openslide_bin" for n in ("SQLite", "cairo", "glib", "libdicom", "libjpeg-turbo", "libpng",
                                                   "libtiff", "libxml2", "pixman", "zlib-ng")},
    **{f"native:pillow/{n}": "PIL" for n in ("libjpeg-turbo", "openjpeg", "libtiff", "lcms2", "xz", "zstd", "libxcb",
                                             "libXau")},
    "native:opencv": "cv2", "opencv/libjpeg-turbo": "cv2", "opencv/libtiff": "cv2", "opencv/harfbuzz": "cv2",
    "opencv/Rubik": "cv2",
}
# Parts whose binary does not record their version (header-only, or the version string not linked in): the
# identity of what compiles them in, e.g. 'onnxruntime-1.32.0'.
CONTAINED = {
    **{f"qt/{n}": "PySide6" for n in ("md4c", "double-conversion", "libb2")},
    **{f"onnxruntime-native/{n}": "onnxruntime" for n in ("eigen", "flatbuffers", "safeint", "microsoft-gsl", "date",
                                                          "mp11", "cpuinfo")},
    **{f"openslide/{n}": "openslide_bin" for n in ("OpenJPEG", "Zstandard", "libffi", "uthash")},
}
NUMBER = re.compile(r"^\d+(\.\d+)+$")


def _program(path: Path, modules: tuple[str, ...]) -> None:
    """A PyInstaller program as sbom_bundle.pyz_modules reads it: a CArchive after the bootloader, whose 'z' entry is a PYZ
    archive listing the modules (the layout PyInstaller 6 writes)."""
    toc = marshal.dumps([(f"{m}.core", (0, 0, 0)) for m in modules])
    pyz = b"PYZ\0" + bytes(4) + struct.pack("!i", 12) + toc
    entry = struct.pack("!IIIIBc", 18 + 8, 0, len(pyz), len(pyz), 0, b"z") + b"PYZ.pyz\0"
    cookie = struct.pack("!8sIIii64s", b"MEI\014\013\012\013\016", len(pyz) + len(entry) + 88, len(pyz), len(entry),
                         311, b"libpython3.11.so.1.0")
    path.write_bytes(b"\x7fELF (bootloader)" + pyz + entry + cookie)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bundle") / "slidetally"
    for rel, target in STAND_IN.items():
        if target.exists():
            (root / "_internal" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "_internal" / rel).symlink_to(target)
    _program(root / "slidetally", MODULES)
    return root


def _base() -> dict:
    refs = {}
    for name in DISTRIBUTIONS:
        try:
            refs[name] = f"{name}=={version(name)}"
        except PackageNotFoundError:
            pass
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "components": [{"type": "library", "bom-ref": ref, "name": n, "version": ref.split("==")[1]}
                           for n, ref in refs.items()],
            "dependencies": [{"ref": refs.get("onnxruntime"), "dependsOn": [refs.get("flatbuffers"), refs.get("numpy")]}]}


@pytest.fixture(scope="module")
def bom(bundle) -> dict:
    with pytest.MonkeyPatch.context() as patch:  # the bootloader's version is PyInstaller's, in the build venv
        patch.setattr(sbom_probes, "version_of", lambda name: VERSION_OF(name) or ("6.0" if name == "pyinstaller" else None))
        return sbom.complete(_base(), None, "0.1.0", bundle)


VERSION_OF = sbom_probes.version_of


def _parts(bom: dict) -> dict[str, dict]:
    return {c["bom-ref"]: c for c in sbom.walk(bom["components"])}


def _needs(module: str) -> None:
    if not importlib.util.find_spec(module):
        pytest.skip(f"{module} is not installed")


@pytest.mark.parametrize("ref", READ)
def test_each_part_gets_the_version_its_files_record(bom, bundle, ref):
    _needs(READ[ref])
    comp = _parts(bom)[ref]
    # re2's vcpkg port builds a commit of it
    assert NUMBER.match(comp["version"]) or (ref.endswith("/re2") and re.match(r"^[0-9a-f]{10,40}$", comp["version"]))
    method = comp["evidence"]["identity"][0]["methods"][0]
    assert method["technique"] != "other" and method["value"], method
    assert comp["evidence"]["occurrences"]
    assert all((bundle / o["location"]).exists() for o in comp["evidence"]["occurrences"])


@pytest.mark.parametrize("ref", CONTAINED)
def test_a_part_without_a_recorded_version_gets_its_containers(bom, ref):
    _needs(CONTAINED[ref])
    comp = _parts(bom)[ref]
    container = _parts(bom)[f"native:{ref.split('/')[0]}"]
    assert re.match(rf"^[a-z-]+-{re.escape(container['version'])}$", comp["version"]) or (
        ref.startswith("openslide/") and comp["version"] == f"openslide-bin-{version('openslide-bin')}")


def test_versions_agree_with_what_the_libraries_and_their_packages_say(bom):
    parts = {ref: c["version"] for ref, c in _parts(bom).items()}
    assert parts["native:cpython"] == platform.python_version()  # the stand-in's libpython is this interpreter's
    assert parts["cpython/libmpdec"] == _decimal.__libmpdec_version__
    if "native:qt" in parts:
        assert parts["native:qt"] == version("PySide6-Essentials")
    if "native:onnxruntime-native" in parts:
        assert parts["native:onnxruntime-native"] == version("onnxruntime")
    if "native:pillow/libtiff" in parts:
        from PIL import features
        assert parts["native:pillow/libtiff"] == features.version("libtiff")
        assert parts["native:pillow/openjpeg"] == features.version("jpg_2000")
        assert parts["native:pillow/lcms2"] == features.version("littlecms2")
    if "native:openslide" in parts:
        import openslide
        assert parts["native:openslide"] == openslide.__library_version__


def test_only_what_the_bundle_carries(bom):
    names = {c["name"] for c in bom["components"]}
    assert {"numpy", "onnxruntime", "fhir.resources"} <= names
    assert "pandas" not in names  # the trainer's tools: no runtime dependency
    assert "flatbuffers" not in names  # onnxruntime's, but not in the bundle: not among the program's modules
    assert "flatbuffers" not in json.dumps(bom["dependencies"])
    numpy = next(c for c in bom["components"] if c["name"] == "numpy")
    assert {o["location"] for o in numpy["evidence"]["occurrences"]} >= {"slidetally", "_internal/numpy"}
    refs = [c["bom-ref"] for c in sbom.walk(bom["components"])]
    assert len(refs) == len(set(refs))


def test_what_a_wheels_own_sbom_says_its_extension_compiles_in(bom):
    _needs("onnx")
    onnx = next(c for c in bom["components"] if c["name"] == "onnx")
    embeds = {c["name"]: c for c in onnx.get("components", [])}
    assert {"abseil-cpp", "protobuf"} <= set(embeds)
    assert all(NUMBER.match(c["version"]) and c["evidence"]["occurrences"] for c in embeds.values())


def test_the_check_names_an_unknown_library_and_a_missing_version(bom, bundle, tmp_path):
    assert sbom.check(bundle, bom) == []
    copy = tmp_path / "slidetally"
    shutil.copytree(bundle, copy, symlinks=True)
    shutil.copy(STAND_IN["libpython3.11.so.1.0"], copy / "_internal" / "libfoo.so.1")  # any ELF library
    assert sbom.check(copy, bom) == ["_internal/libfoo.so.1: no component names it"]
    broken = json.loads(json.dumps(bom))
    del broken["components"][-1]["version"]
    assert sbom.check(bundle, broken) == [f"{broken['components'][-1]['bom-ref']}: no version"]
    (tmp_path / "sbom.json").write_text(json.dumps(bom))
    out = subprocess.run([sys.executable, str(ROOT / "installer" / "sbom.py"), "--check", str(copy),
                          str(tmp_path / "sbom.json")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "_internal/libfoo.so.1" in out.stderr


def test_the_numpy_wheels_openblas_in_the_bundle_stops_the_check(bom, bundle, tmp_path):
    """Issue 42: the bundle's NumPy is built against Debian's OpenBLAS (a Depends, not bundled), and the SBOM knows no
    OpenBLAS, libgfortran or libquadmath; a bundle that carried the wheel's numpy.libs again fails --check, naming each
    library."""
    wheel_libs = SITE / "numpy.libs"
    if not wheel_libs.is_dir():
        pytest.skip("this venv's NumPy has no numpy.libs (not the wheel)")
    copy = tmp_path / "slidetally"
    shutil.copytree(bundle, copy, symlinks=True)
    (copy / "_internal" / "numpy.libs").symlink_to(wheel_libs)
    problems = sbom.check(copy, bom)
    assert problems and all(p.startswith("_internal/numpy.libs/") and p.endswith(": no component names it")
                            for p in problems)
    assert any("openblas" in p for p in problems) and any("libgfortran" in p for p in problems)
    assert not {"openblas", "libgfortran", "libquadmath"} & {c["name"] for c in sbom.walk(bom["components"])}


def test_a_version_not_found_stops_the_build_naming_the_part(bundle, monkeypatch):
    monkeypatch.setattr(sbom_probes, "version_of", lambda name: None if name == "pyinstaller" else VERSION_OF(name))
    with pytest.raises(sbom_probes.ProbeError, match=r"native:pyinstaller-bootloader \(slidetally\)"):
        sbom_native.native_parts(sbom_bundle.bundle_files(bundle), None)


def test_opencv_summary_is_read_from_cmakes_log_too():
    log = ("-- General configuration for OpenCV 5.1.0 =====\n"
           "--     JPEG:                        build-libjpeg-turbo (ver 3.1.2-70)\n"
           "--     PNG:                         build (ver 1.6.50)\n"
           "--     TIFF:                        build (ver 42 - 4.7.1)\n"
           "--     HarfBuzz:                    build (ver 14.2.1)\n")
    assert sbom_native.codec_versions(log) == {"libjpeg-turbo": "3.1.2", "libpng": "1.6.50", "libtiff": "4.7.1",
                                               "harfbuzz": "14.2.1", "softfloat": None, "dlpack": None}
    system = sbom_native.codec_versions("    PNG:                         /usr/lib/x86_64-linux-gnu/libpng.so (ver 1.6.39)\n")
    assert system["libpng"] is None  # the system's library: not compiled in


def test_a_part_the_sbom_does_not_know_stops_the_build(tmp_path):
    licences = tmp_path / "licenses" / "3rdparty"
    licences.mkdir(parents=True)
    # what build_opencv.sh's configuration of OpenCV 5.1 installs
    for name in ("fonts-Rubik_OFL.txt", "harfbuzz-COPYING", "SoftFloat-COPYING.txt", "dlpack-LICENSE", "libtiff-LICENSE.md",
                 "libpng-LICENSE", "libpng-README", "libjpeg-turbo-README.md", "libjpeg-turbo-LICENSE.md",
                 "libjpeg-turbo-README.ijg"):
        (licences / name).touch()
    assert sbom_native.licensed_parts(tmp_path) == {"libjpeg-turbo", "libpng", "libtiff", "harfbuzz", "softfloat",
                                                    "dlpack", "fonts"}
    (licences / "quirc-LICENSE").touch()
    with pytest.raises(sbom_probes.ProbeError, match="quirc-LICENSE"):
        sbom_native.licensed_parts(tmp_path)


def test_qt_links_the_systems_zlib_and_freetype(bundle):
    """Why the Qt component lists no zlib or FreeType: the wheel's Qt links the system's (left out of the bundle)."""
    _needs("PySide6")
    lib = bundle / "_internal" / "PySide6/Qt/lib"
    assert b"libz.so.1\0" in (lib / "libQt6Core.so.6").read_bytes()
    assert b"libfreetype.so.6\0" in (lib / "libQt6Gui.so.6").read_bytes()


def test_the_sbom_is_valid_cyclonedx(bom):
    if not importlib.util.find_spec("cyclonedx"):
        pytest.skip("needs cyclonedx-python-lib (installer/requirements-tools.lock)")
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is None
