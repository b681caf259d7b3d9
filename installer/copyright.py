"""Write the .deb's machine-readable copyright file (DEP-5) and copy every bundled licence text beside it.

Usage (with the build venv's python): copyright.py PACKAGE_ROOT BUNDLE_DIR OPENCV_LICENSES
  e.g. build/deb/slidetally_1_amd64 usr/lib/slidetally build/opencv-5.0.0.93-<key>/licenses
The texts come from the installed wheels, the OpenCV source that installer/build_opencv.sh compiled, Python's own
LICENSE.txt, PyInstaller's COPYING.txt and Debian's files; nothing is written by hand. A file in the bundle that
no paragraph below covers stops the build.
"""

from __future__ import annotations

import fnmatch
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

COMMON = "/usr/share/common-licenses"


@dataclass(frozen=True)
class Component:
    name: str
    files: tuple[str, ...]  # globs relative to the bundle's _internal/ (or the bundle, for the programs)
    copyright: str
    licence: str
    texts: tuple[Path, ...]  # copied to /usr/share/doc/slidetally/licenses/<name>/
    comment: str = ""


def dist_file(dist: str, relative: str) -> Path:
    return Path(distribution(dist).locate_file(relative))


def licence_files(dist: str) -> tuple[Path, ...]:
    files = distribution(dist).files or []
    return tuple(Path(distribution(dist).locate_file(f)) for f in files
                 if any(word in f.name.upper() for word in ("LICEN", "COPYING", "NOTICE")) and f.suffix not in (".py", ".pyc"))


def components(opencv_licenses: Path) -> list[Component]:
    python_licence = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    icu = Path("/usr/share/doc/libicu72/copyright")
    return [
        Component("pyinstaller", ("../slidetally", "../slidetally-cli"), "2010-2023, PyInstaller Development Team",
                  "GPL-2+ with Bootloader exception", licence_files("pyinstaller"),
                  "The two programs are PyInstaller's bootloader followed by an archive of Python byte code:\n"
                  "SlideTally's own (Expat), platformdirs (Expat, licenses/platformdirs), Python's standard\n"
                  "library (PSF-2.0) and the Python parts of the packages below, each under its licence."),
        Component("python", ("libpython3*", "python3.*/*", "base_library.zip"),
                  "2001-2023 Python Software Foundation", "PSF-2.0", (python_licence,)),
        Component("pyside6", ("PySide6/*", "shiboken6/*", "libpyside6*", "libshiboken6*", "libQt6*"),
                  "The Qt Company Ltd. and other contributors", "LGPL-3",
                  licence_files("PySide6_Essentials") + licence_files("shiboken6"),
                  "Qt and Qt for Python (PySide6, shiboken6). See the relinking note above.\n"
                  "Qt's own third-party components: https://doc.qt.io/qt-6/licenses-used-in-qt.html"),
        Component("icu", ("PySide6/Qt/lib/libicu*", "libicu*"), "Unicode, Inc. and others", "ICU", (icu,),
                  "ICU, shipped with Qt. Its licence is in Debian's copyright file of libicu72,\n"
                  "installed as licenses/icu/copyright."),
        Component("numpy", ("numpy/*", "numpy.libs/*", "numpy-*.dist-info/*", "libscipy_openblas*", "libgfortran*",
                            "libquadmath*"),
                  "2005-2025, NumPy Developers", "BSD-3-clause", licence_files("numpy"),
                  "numpy.libs holds OpenBLAS, LAPACK and the GCC Fortran runtime; their licences follow\n"
                  "NumPy's in licenses/numpy/LICENSE.txt."),
        Component("opencv", ("cv2/*",), "OpenCV team and contributors", "Apache-2.0",
                  tuple(sorted(p for p in opencv_licenses.rglob("*") if p.is_file())),
                  "OpenCV's core, imgproc and imgcodecs, built by installer/build_opencv.sh from the source of\n"
                  "the opencv-python-headless release the development install uses. The third-party parts it\n"
                  "compiles in (libjpeg-turbo, libpng, libtiff, Berkeley SoftFloat, dlpack, the Rubik font)\n"
                  "have their licences in licenses/opencv/3rdparty/, as OpenCV's build installs them."),
        Component("onnxruntime", ("onnxruntime/*",), "Microsoft Corporation", "Expat",
                  (dist_file("onnxruntime", "onnxruntime/LICENSE"),
                   dist_file("onnxruntime", "onnxruntime/ThirdPartyNotices.txt")),
                  "Third-party notices: licenses/onnxruntime/ThirdPartyNotices.txt."),
        Component("onnx", ("onnx/*", "onnx-*.dist-info/*"), "ONNX Project Contributors", "Apache-2.0",
                  licence_files("onnx"), "The onnx library: reads and writes model graphs for site adaptation."),
        Component("ml_dtypes", ("ml_dtypes/*", "ml_dtypes-*.dist-info/*"), "2022 The ml_dtypes Authors", "Apache-2.0",
                  licence_files("ml_dtypes"), "Extra numpy dtypes, required by the onnx library."),
        Component("protobuf", ("google/*", "protobuf-*.dist-info/*"), "2008 Google Inc.", "BSD-3-clause",
                  licence_files("protobuf"), "Protocol Buffers, used by the onnx library."),
        Component("filelock", (), "2014-2024 Benedikt Schmitt and contributors", "Expat", licence_files("filelock"),
                  "Python byte code inside the programs; serialises two starts on one folder."),
        Component("psutil", ("psutil/*",), "2009, Jay Loden, Dave Daeschler, Giampaolo Rodola", "BSD-3-clause",
                  licence_files("psutil")),
        Component("platformdirs", (), "2010-202x The platformdirs developers", "Expat", licence_files("platformdirs")),
        Component("hl7apy", ("hl7apy/*",), "2012-2024 CRS4", "Expat", licence_files("hl7apy"),
                  "Builds and validates the HL7 v2.5.1 messages for the laboratory information system."),
        # fhir.resources and fhir-core ship no licence file in their wheels (only the BSD-3-clause
        # classifier); their "notice" modules (PaymentNotice, ...) are FHIR resources, not licences.
        Component("fhir.resources", (), "2019 Md Nazrul Islam", "BSD-3-clause", (),
                  "fhir.resources and fhir-core build and validate the FHIR R4B Bundle;\n"
                  "Python byte code inside the programs."),
        Component("pydantic", ("pydantic_core/*", "pydantic-*.dist-info/*", "pydantic_core-*.dist-info/*"),
                  "2017-present Pydantic Services Inc. and individual contributors", "Expat",
                  licence_files("pydantic") + licence_files("pydantic-core") + licence_files("annotated-types")
                  + licence_files("typing-inspection"),
                  "pydantic, pydantic-core, annotated-types and typing-inspection: data validation used by\n"
                  "fhir.resources."),
        Component("typing_extensions", (), "2001-2024 Python Software Foundation", "PSF-2.0",
                  licence_files("typing-extensions"), "Python byte code inside the programs."),
    ]


def text_after(path: Path, start: str, stop: str | None = None) -> str:
    text = path.read_text(encoding="utf-8")
    text = text[text.index(start):]
    return text[:text.index(stop)] if stop else text


def licence_paragraphs(comps: list[Component]) -> dict[str, str]:
    by_name = {c.name: c for c in comps}
    bootloader = next(p for p in by_name["pyinstaller"].texts if p.name.startswith("COPYING"))
    return {
        "Expat": text_after(by_name["platformdirs"].texts[0], "Permission is hereby granted"),
        "BSD-3-clause": text_after(by_name["psutil"].texts[0], "Redistribution and use"),
        "PSF-2.0": by_name["python"].texts[0].read_text(encoding="utf-8"),
        "GPL-2+ with Bootloader exception": text_after(bootloader, "In addition to the permissions", "\n \n")
        + f"\n\nOn Debian systems, the complete text of the GNU General Public License version 2\n"
          f"can be found in {COMMON}/GPL-2. PyInstaller's licence: licenses/pyinstaller/.",
        "LGPL-3": f"On Debian systems, the complete text of the GNU Lesser General Public License version 3\n"
                  f"can be found in {COMMON}/LGPL-3, and the GNU GPL version 3 it builds on in {COMMON}/GPL-3.",
        "Apache-2.0": f"On Debian systems, the complete text of the Apache License 2.0 can be found in\n"
                      f"{COMMON}/Apache-2.0.",
        "ICU": "The ICU licence (Unicode licence agreement) is in licenses/icu/copyright.",
    }


def field(name: str, value: str) -> str:
    first, *rest = value.strip("\n").splitlines() or [""]
    lines = [f"{name}: {first}".rstrip()]
    lines += [" " + line.rstrip() if line.strip() else " ." for line in rest]
    return "\n".join(lines) + "\n"


HEADER_COMMENT = """\
SlideTally is distributed with the libraries it runs on, each under its own licence, listed below;
the full texts are in /usr/share/doc/slidetally/licenses/ and /usr/share/common-licenses/.

Relinking (LGPL): Qt and Qt for Python are shared libraries loaded at run time from
/usr/lib/slidetally/_internal (PySide6/Qt/lib, PySide6, shiboken6).
You may replace any of them with your own build of the same version, modified or not, and
reverse-engineer SlideTally for debugging such changes. The source code of Qt is at
https://download.qt.io/official_releases/qt/, of Qt for Python at
https://download.qt.io/official_releases/QtForPython/."""


def main(package_root: str, bundle: str, opencv_licenses: str) -> None:
    root = Path(package_root)
    internal = root / bundle / "_internal"
    doc = root / "usr/share/doc/slidetally"
    comps = components(Path(opencv_licenses))
    covered = set()
    for path in internal.rglob("*"):
        if path.is_file() or path.is_symlink():
            relative = path.relative_to(internal).as_posix()
            if relative.startswith("resources/") or relative.startswith("slidetally-"):
                continue  # SlideTally's own data and metadata: Files: *
            if not any(fnmatch.fnmatch(relative, glob) for c in comps for glob in c.files):
                sys.exit(f"copyright.py: no licence for bundled file {relative}: add it to a component")
            covered.add(relative)
    paragraphs = ["Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
                  + field("Upstream-Name", "SlideTally") + field("Comment", HEADER_COMMENT),
                  field("Files", "*") + field("Copyright", "2026 SlideTally developers") + field("License", "Expat")]
    for comp in comps:
        for text in comp.texts:
            # keep the folders a wheel's licenses/ has (NumPy's has several LICENSE.txt)
            parts = text.parts
            relative = Path(*parts[len(parts) - parts[::-1].index("licenses"):]) if "licenses" in parts else text.name
            target = doc / "licenses" / comp.name / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(text, target)
        if comp.files:
            globs = " ".join(str(Path(bundle) / ("_internal/" + g if not g.startswith("../") else g[3:]))
                             for g in comp.files)
            paragraph = field("Files", globs) + field("Copyright", comp.copyright) + field("License", comp.licence)
            paragraphs.append(paragraph + (field("Comment", comp.comment) if comp.comment else ""))
    for name, text in licence_paragraphs(comps).items():
        paragraphs.append(field("License", name + "\n" + text))
    (doc / "copyright").write_text("\n".join(paragraphs), encoding="utf-8")
    print(f"copyright: {len(comps)} components, {len(covered)} bundled files covered")


if __name__ == "__main__":
    main(*sys.argv[1:])
