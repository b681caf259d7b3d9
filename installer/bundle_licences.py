"""Find the licence texts of every Python distribution the bundle carries, each under its own folder.

A text keeps its path inside its wheel: `<dist-info>/licenses/X` → `X`, `<dist-info>/LICENSE` → `LICENSE`, any
other file (e.g. `onnxruntime/ThirdPartyNotices.txt`) → that path. Nothing is renamed or flattened, so two files
never overwrite each other; `plan()` refuses a collision and a distribution without any text.
"""

from __future__ import annotations

import re
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
WORDS = ("LICEN", "COPYING", "NOTICE")
# Built from source by installer/build_opencv.sh instead of taken from its wheel (texts from that build).
REPLACED = {"opencv-python-headless"}
# Bundled from the build venv though the app does not depend on them: PyInstaller's bootloader starts both programs,
# and PyInstaller collects setuptools (its runtime hook pyi_rth_setuptools) where the spec does not leave it out, as
# it now does; given the bundle, copyright.py lists each only where the bundle has its files.
BUILD_BUNDLED = ("pyinstaller", "setuptools")
# Left out of the bundle by installer/slidetally.spec (EXCLUDES), though a dependency names it (none now: Pillow
# went in with whole-slide images, openslide-python returns its regions as Pillow images).
NOT_BUNDLED: set[str] = set()
# Wheels that ship no licence text: the text from the same release's source distribution on PyPI (fhir*),
# or the licence their metadata names, as Debian ships it (installer/licenses/).
SUPPLIED = {
    "fhir-resources": ("fhir.resources/LICENSE",),
    "fhir-core": ("fhir-core/LICENSE",),
    "pyside6-essentials": ("LGPL-3", "GPL-3", "GPL-2"),
    "shiboken6": ("LGPL-3", "GPL-3", "GPL-2"),
    "flatbuffers": ("Apache-2.0",),
}
# Metadata without a License-Expression: the licence its text states.
LICENCE = {
    "fhir-resources": "BSD-3-Clause", "fhir-core": "BSD-3-Clause", "flatbuffers": "Apache-2.0", "hl7apy": "MIT",
    "onnxruntime": "MIT", "protobuf": "BSD-3-Clause", "psutil": "BSD-3-Clause",
    "pyside6-essentials": "LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only",
    "shiboken6": "LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only",
    "pyinstaller": "GPL-2.0-or-later WITH Bootloader-exception",
    "opencv-python-headless": "Apache-2.0 AND LGPL-2.1-or-later (FFmpeg) AND the licences in LICENSE-3RD-PARTY.txt",
}
# Libraries vendored into the wheel whose licences its text carries but its License-Expression omits.
# Pillow: the libraries of its wheel that the spec keeps (PIL/_imaging's codecs, ImageCms's lcms2). NumPy has none:
# build_numpy.sh compiles it against Debian's OpenBLAS (a Depends, not bundled) instead of the wheel's copy with
# libgfortran and libquadmath, and its License-Expression names what the source compiles in.
VENDORED = {"pillow": "IJG AND BSD-3-Clause (libjpeg-turbo) AND libtiff AND BSD-2-Clause (OpenJPEG) AND "
                      "MIT (lcms2, libxcb, libXau) AND 0BSD (xz) AND BSD-3-Clause (zstd)"}
# Where PyInstaller puts a distribution's shared libraries outside its own folders (relative to _internal/).
# None for NumPy: a numpy.libs/ in the bundle is a file no paragraph covers, and the build stops.
EXTRA_GLOBS = {
    # links PyInstaller puts beside pillow.libs/ (the libraries auditwheel named with a hash)
    "pillow": tuple(f"{lib}-*" for lib in ("libXau", "libjpeg", "liblcms2", "liblzma", "libopenjp2", "libtiff", "libxcb",
                                           "libzstd")),
    "pyside6-essentials": ("libpyside6*", "libQt6*", "PySide6/Qt/lib/libicu*", "libicu*"),
    "shiboken6": ("libshiboken6*",),
    "openslide-bin": ("libopenslide*",),
    "pyinstaller": ("../slidetally", "../slidetally-cli"),
}
COPYRIGHT = re.compile(r"copyright\s*(?:\(c\)|©)\s*(.+)$|^\s*copyright\s+(\d{4}.+)$", re.IGNORECASE | re.MULTILINE)
TEMPLATE = re.compile(r"[<\[{]|yyyy|notice|holder|name of", re.IGNORECASE)
# Holders a wheel's texts do not name (a Debian licence text names only its own author, the FSF or Apache).
HOLDERS = {
    "pyside6-essentials": ("The Qt Company Ltd. and other contributors",),
    "shiboken6": ("The Qt Company Ltd. and other contributors",),
    "flatbuffers": ("Google Inc.",),
    "onnx": ("ONNX Project Contributors",),
    "ml_dtypes": ("2022 The ml_dtypes Authors",),
    "setuptools": ("the setuptools developers (Python Packaging Authority)",),
}


class LicenceError(Exception):
    """A licence the build cannot ship: a collision of two texts, or a distribution without one."""


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    licence: str
    texts: dict[str, Path]  # path under licenses/<name>/ -> source file
    globs: tuple[str, ...] = ()  # relative to the bundle's _internal/
    holders: tuple[str, ...] = field(default=())


def runtime_distributions(pyproject: Path, replaced: frozenset[str] = frozenset(REPLACED)) -> list[str]:
    """The distributions the app's dependencies pull in (markers evaluated here), less those built from source."""
    todo = list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    seen: dict[str, str] = {}
    while todo:
        req = Requirement(todo.pop())
        key = canonicalize_name(req.name)
        if key in seen or key in replaced or key in NOT_BUNDLED or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen[key] = req.name
        todo += [r for r in distribution(req.name).requires or [] if "extra ==" not in r]
    return sorted(seen.values(), key=canonicalize_name)


def relative(record_path: str) -> str:
    parts = record_path.split("/")
    if parts[0].endswith(".dist-info"):
        return "/".join(parts[2:] if len(parts) > 2 and parts[1] == "licenses" else parts[1:])
    return record_path


def wheel_texts(name: str) -> dict[str, Path]:
    dist = distribution(name)
    texts = {}
    for f in dist.files or []:
        in_licenses = ".dist-info/licenses/" in f.as_posix()
        if (in_licenses or any(w in f.name.upper() for w in WORDS)) and f.suffix not in (".py", ".pyc", ".pyi"):
            texts[relative(f.as_posix())] = Path(str(dist.locate_file(f)))
    for supplied in SUPPLIED.get(canonicalize_name(name), ()):
        texts[Path(supplied).name] = HERE / "licenses" / supplied
    return texts


def holders(texts: dict[str, Path], limit: int = 10) -> tuple[str, ...]:
    """Copyright lines of the texts, top-level files first; template lines ('<year>', '[name]') left out."""
    found: list[str] = []
    for rel in sorted(texts, key=lambda r: (r.count("/"), r)):
        for match in COPYRIGHT.finditer(texts[rel].read_text(encoding="utf-8", errors="replace")):
            line = " ".join((match.group(1) or match.group(2)).split()).rstrip('".')
            line = re.sub(r"[.,;]?\s*All(\s+rights(\s+reserved)?)?\.?$", "", line, flags=re.IGNORECASE)
            if not TEMPLATE.search(line) and line not in found:
                found.append(line)
    return tuple(found[:limit])


def globs_of(name: str) -> tuple[str, ...]:
    dist = distribution(name)
    tops = sorted({f.parts[0] for f in dist.files or [] if len(f.parts) > 1 and f.parts[0] not in ("..", "bin")
                   and not f.parts[0].endswith(".data") and f.parts[0] != "__pycache__"})
    return tuple(f"{top}/*" for top in tops) + EXTRA_GLOBS.get(canonicalize_name(name), ())


def python_component(name: str) -> Component:
    try:
        dist = distribution(name)
    except PackageNotFoundError as err:
        raise LicenceError(f"{name} is bundled but not installed in {sys.prefix}") from err
    key = canonicalize_name(name)
    licence = dist.metadata.get("License-Expression") or LICENCE.get(key)
    if not licence:
        raise LicenceError(f"{name}: no License-Expression in its metadata; add what its text says to LICENCE")
    if key in VENDORED:
        licence = f"{licence} AND {VENDORED[key]}"
    texts = wheel_texts(name)
    named = HOLDERS.get(key, ())
    found = holders({r: p for r, p in texts.items() if p.parent != HERE / "licenses"})
    return Component(name, dist.version, licence, texts, globs_of(name), tuple(dict.fromkeys(named + found)))


def cpython_component() -> Component:
    """The Python runtime. The Linux build's (installer/build_python.sh) keeps its texts beside its install: CPython's
    LICENSE, Doc/license.rst (the code it compiles in: libmpdec, Mersenne Twister, SipHash...) and Debian's copyright
    file; its folder is named by the Debian version it was built from. Otherwise the runtime's own LICENSE.txt."""
    build = Path(sys.base_prefix).parent / "licenses"
    if (build / "LICENSE").exists():
        texts = {name: build / name for name in ("LICENSE", "license.rst", "debian-copyright") if (build / name).exists()}
        debian = build.parent.name.removeprefix("python-").rsplit("-", 1)[0]  # build/python-<Debian version>-<key>
        version = f"{sys.version.split()[0]} (Debian {debian})"
        return Component("python", version, "PSF-2.0 AND BSD-2-Clause (libmpdec) AND others in license.rst", texts,
                         ("libpython3*", "python3.*/*", "base_library.zip"), holders(texts))
    # Linux and macOS keep it beside the standard library, Windows in the installation's root.
    found = [p for p in (Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt", Path(sys.base_prefix) / "LICENSE.txt")
             if p.exists()]
    texts = {"LICENSE.txt": found[0]} if found else {}
    return Component("python", sys.version.split()[0], "PSF-2.0", texts,
                     ("libpython3*", "python3.*/*", "base_library.zip"), holders(texts) if texts else ())


def plan(components: list[Component]) -> dict[Path, Path]:
    """Target path under licenses/ → source file; refuses a component without text and two texts on one path."""
    targets: dict[Path, Path] = {}
    for comp in components:
        if not comp.texts:
            raise LicenceError(f"{comp.name} {comp.version} is bundled but ships no licence text: "
                               f"add it to installer/licenses/ and SUPPLIED in installer/bundle_licences.py")
        for rel, source in comp.texts.items():
            target = Path(comp.name) / rel
            if target in targets:
                raise LicenceError(f"two licence texts would be written to licenses/{target}: "
                                   f"{targets[target]} and {source}")
            targets[target] = source
    return targets
