"""Write the .deb's machine-readable copyright file (DEP-5), copy every bundled licence text under its own
distribution's folder, and write resources/LICENSES.md (the About box's list) from the same components.

Usage (with the build venv's python):
  copyright.py PACKAGE_ROOT BUNDLE_DIR OPENCV_LICENSES   (build/deb/slidetally_V_amd64 usr/lib/slidetally build/opencv-*/licenses)
  copyright.py --licenses-md resources/LICENSES.md [OPENCV_LICENSES [BUNDLE]]   the About box's list only
Given the bundle (dist/slidetally), the About box's list has the components the copyright file has: the
distributions the bundle carries (not flatbuffers). Without it (the Windows build, before PyInstaller), every
distribution the app's dependencies pull in.
The texts come from the installed wheels (installer/bundle_licences.py), the OpenCV source that
installer/build_opencv.sh compiled, Python's own LICENSE.txt and installer/licenses/. The build stops on a bundled
file no paragraph covers, a distribution without licence text, two texts on one path, or a bundled LICENSES.md that
lists other components than the copyright file.
"""

from __future__ import annotations

import fnmatch
import shutil
import sys
from pathlib import Path

import bundle_licences as bl

ROOT = Path(__file__).resolve().parent.parent
DOC = "/usr/share/doc/slidetally"
PURPOSE = {
    "pyside6-essentials": "the windows (Qt 6)", "shiboken6": "Qt for Python's bindings",
    "onnxruntime": "running the models", "opencv": "decoding and resizing images", "numpy": "arrays",
    "onnx": "site adaptation (model graphs)", "protobuf": "the onnx library's model files",
    "ml_dtypes": "the onnx library's number types", "psutil": "memory figures", "platformdirs": "the user data folder",
    "filelock": "one app per session folder", "hl7apy": "HL7 v2.5.1 messages to the LIS",
    "fhir.resources": "FHIR R4B Bundles to the LIS", "fhir-core": "FHIR R4B Bundles to the LIS",
    "pydantic": "validation of the FHIR Bundle", "pydantic-core": "validation of the FHIR Bundle",
    "annotated-types": "validation of the FHIR Bundle", "typing-inspection": "validation of the FHIR Bundle",
    "typing-extensions": "type hints at run time", "openslide-python": "whole-slide images",
    "pillow": "whole-slide regions (openslide-python returns them as Pillow images)",
    "openslide-bin": "whole-slide images (OpenSlide C library and its libraries)", "python": "the runtime",
    "pyinstaller": "starting the programs (bootloader)", "packaging": "version checks in ONNX Runtime",
    "flatbuffers": "required by ONNX Runtime", "setuptools": "collected by PyInstaller (its setuptools hook)",
    "qt-third-party": "ICU, HarfBuzz, libpng, FreeType, PCRE2, md4c in Qt",
}
PBC = ("Acevedo A., Merino A., Alférez S., Molina Á., Boldú L., Rodellar J. \"A dataset of microscopic peripheral\n"
       "blood cell images for development of automatic recognition systems\", Data in Brief 30 (2020) 105474;\n"
       "Mendeley Data snkd93bnjr. Full-resolution originals, unchanged.")
IDC = ("Breast Histopathology Images (Kaggle, P. Mooney), derived from Janowczyk A., Madabhushi A. \"Deep learning\n"
       "for digital pathology image analysis\", J Pathol Inform 2016;7:29, and Cruz-Roa A. et al., \"Automatic\n"
       "detection of invasive ductal carcinoma in whole slide images with convolutional neural networks\",\n"
       "SPIE Medical Imaging 2014. Cite both.")
DATA_PARAGRAPHS = [  # (Files, Copyright, License with its text, Comment)
    ("resources/samples/blood/*", "2020 A. Acevedo, A. Merino, S. Alférez, Á. Molina, L. Boldú, J. Rodellar",
     "CC-BY-4.0\nCreative Commons Attribution 4.0 International. The legal code is at\n"
     "https://creativecommons.org/licenses/by/4.0/legalcode; give credit as in the Comment.", "Source: " + PBC),
    ("resources/samples/breast-idc-9022/*", "2016 A. Janowczyk, A. Madabhushi; 2014 A. Cruz-Roa et al.",
     "other-research-use\nPublished by the authors for research use (see the Kaggle dataset page and the\n"
     "publications in the Comment). Not for diagnosis; redistributed here as sample data.", "Source: " + IDC),
    ("resources/models/*", "2026 SlideTally developers", "Expat",
     "Trained by the SlideTally developers on the PBC dataset (CC BY 4.0: " + PBC.split(";")[0] + ")\n"
     "and on the " + IDC.split(", derived")[0] + "; see each model card."),
]
HEADER = """\
SlideTally is distributed with the libraries it runs on, each under its own licence, listed below; every text a
library ships is in /usr/share/doc/slidetally/licenses/<library>/, at the path it has in that library's wheel
or source, and the bill of materials is /usr/share/doc/slidetally/slidetally.cdx.json.

Relinking (LGPL): Qt, Qt for Python and OpenSlide (with the glib, cairo and other LGPL libraries compiled into it)
are shared libraries loaded at run time from /usr/lib/slidetally/_internal (PySide6/Qt/lib, PySide6, shiboken6,
openslide_bin).
You may replace any of them with your own build of the same version, modified or not, and
reverse-engineer SlideTally for debugging such changes. Their complete corresponding source is offered in
writing for three years in /usr/share/doc/slidetally/SOURCE-OFFER, which names each version; upstream
sources: Qt at https://download.qt.io/official_releases/qt/, Qt for Python at
https://download.qt.io/official_releases/QtForPython/, OpenSlide at https://openslide.org/."""
COMMON_LICENCES = {"LGPL-2.1": "GNU Lesser General Public License version 2.1",
                   "LGPL-3": "GNU Lesser General Public License version 3",
                   "GPL-2": "GNU General Public License version 2", "GPL-3": "GNU General Public License version 3",
                   "Apache-2.0": "Apache License 2.0"}
EXPAT = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and
to permit persons to whom the Software is furnished to do so, subject to the following conditions:
.
The above copyright notice and this permission notice shall be included in all copies or substantial portions of
the Software.
.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
IN THE SOFTWARE."""


# The parts OpenCV's build compiles in, by the name its build gives their licence texts (3rdparty/<name>-<file>):
# the licence line is made from the texts present, and a text of a part not named here stops the build.
OPENCV_PARTS = {"libjpeg-turbo": "IJG AND BSD-3-Clause AND Zlib", "libpng": "Libpng", "libtiff": "libtiff",
                "SoftFloat": "BSD-3-Clause", "harfbuzz": "MIT-Modern-Variant", "fonts": "OFL-1.1 (the Rubik font)",
                "dlpack": "Apache-2.0", "zlib": "Zlib"}


def opencv_licence(texts: dict[str, Path]) -> str:
    """OpenCV's licence line from the texts its build installed (3rdparty/<part>-<file>), parts in order."""
    parts, unknown = set(), set()
    for name in texts:
        if name.startswith("3rdparty/"):
            file = name.removeprefix("3rdparty/")
            part = next((p for p in OPENCV_PARTS if file.startswith(p + "-")), None)
            if part:
                parts.add(part)
            else:
                unknown.add(file)
    if unknown:
        raise bl.LicenceError(f"OpenCV compiles in {', '.join(sorted(unknown))}: add its part to OPENCV_PARTS")
    return " AND ".join(["Apache-2.0"] + [f"{OPENCV_PARTS[part]} ({part})" for part in sorted(parts)])


# Libraries compiled into the Qt of the PySide6 wheel, whose texts the wheel does not carry: Debian's copyright
# files of the same projects (other versions, same licences), where the build machine has them installed.
QT_THIRD_PARTY = {"libicu72": "ICU", "libharfbuzz0b": "MIT", "libpng16-16": "Libpng", "libfreetype6": "(FTL OR GPL-2+)",
                  "libpcre2-16-0": "BSD-3-Clause", "libmd4c0": "MIT", "libdouble-conversion3": "BSD-3-Clause",
                  "libb2-1": "CC0-1.0"}


def qt_third_party(doc_root: Path = Path("/usr/share/doc")) -> bl.Component:
    found = {pkg: doc_root / pkg / "copyright" for pkg in QT_THIRD_PARTY if (doc_root / pkg / "copyright").exists()}
    missing = sorted(set(QT_THIRD_PARTY) - set(found))
    if missing:
        print(f"copyright.py: warning: no Debian copyright file for {', '.join(missing)} (install those packages)")
    licence = " AND ".join(f"{QT_THIRD_PARTY[pkg]} ({pkg})" for pkg in found)
    return bl.Component("qt-third-party", "", licence or "see Qt", {f"{pkg}/copyright": p for pkg, p in found.items()},
                        ("PySide6/Qt/lib/libicu*", "libicu*"), ("Unicode, Inc. and others (ICU)",
                                                                 "the HarfBuzz, libpng, FreeType, PCRE2, md4c authors"))


def has_files(globs: tuple[str, ...], bundle: Path) -> bool:
    """Whether the bundle has a file of these globs (relative to its _internal/; '../' for the bundle's root)."""
    from sbom_bundle import bundle_files, matching

    return bool(matching(bundle_files(bundle), tuple(g[3:] if g.startswith("../") else "_internal/" + g for g in globs)))


def components(opencv_licenses: Path | None, bootloader: bool, bundle: Path | None = None) -> list[bl.Component]:
    """Every component with its texts; given the bundle, only the distributions it carries (e.g. not flatbuffers,
    which ONNX Runtime's metadata requires and the app never imports), as the bill of materials lists them, and of
    the build's own only those it has files of (the bootloader; not setuptools, which the spec leaves out)."""
    names = bl.runtime_distributions(ROOT / "pyproject.toml")
    build = list(bl.BUILD_BUNDLED) if bootloader else []
    if bundle is not None:
        from sbom import carried

        names = carried(names, bundle)
        build = [name for name in build if has_files(bl.globs_of(name), bundle)]
    names += build
    comps = [bl.python_component(name) for name in names] + [bl.cpython_component(), qt_third_party()]
    texts = {}
    if opencv_licenses is not None:
        texts = {p.relative_to(opencv_licenses).as_posix(): p for p in sorted(opencv_licenses.rglob("*")) if p.is_file()}
    version = opencv_licenses.parent.name.split("-")[1] if opencv_licenses is not None else ""
    comps.append(bl.Component("opencv", version, opencv_licence(texts) if texts else "Apache-2.0", texts, ("cv2/*",),
                              ("OpenCV team and contributors", *bl.holders(texts))))
    return comps


def field(name: str, value: str) -> str:
    first, *rest = value.strip("\n").splitlines() or [""]
    lines = [f"{name}: {first}".rstrip()]
    lines += [" " + line.rstrip() if line.strip() and line != "." else " ." for line in rest]
    return "\n".join(lines) + "\n"


def dep5(comps: list[bl.Component], bundle: str) -> str:
    paragraphs = ["Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
                  + field("Upstream-Name", "SlideTally")
                  + field("Upstream-Contact", "SlideTally developers <packaging@slidetally.org>\n"
                                              "Security: <security@slidetally.org> (SECURITY.md)")
                  + field("Source", "https://slidetally.org")
                  + field("Comment", HEADER),
                  field("Files", "*") + field("Copyright", "2026 SlideTally developers") + field("License", "Expat")]
    for files, holder, licence, comment in DATA_PARAGRAPHS:
        paragraphs.append(field("Files", f"{bundle}/_internal/{files}") + field("Copyright", holder)
                          + field("License", licence) + field("Comment", comment))
    for comp in comps:
        globs = " ".join(f"{bundle}/{g[3:]}" if g.startswith("../") else f"{bundle}/_internal/{g}" for g in comp.globs)
        where = f"{DOC}/licenses/{comp.name}/"
        listing = "\n".join(sorted(comp.texts)[:12]) + ("\n..." if len(comp.texts) > 12 else "")
        paragraphs.append(field("Files", globs) + field("Copyright", "\n".join(comp.holders) or f"the {comp.name} authors")
                          + field("License", f"{comp.licence}\nThe licence texts of {comp.name} {comp.version} are in {where}:\n"
                                  + listing)
                          + field("Comment", f"{comp.name} {comp.version}: {PURPOSE.get(comp.name.lower(), 'a dependency')}."))
    paragraphs.append(field("License", "Expat\n" + EXPAT))
    for name, title in COMMON_LICENCES.items():  # the texts Debian ships once for every package
        paragraphs.append(field("License", f"{name}\nOn Debian systems, the complete text of the {title} can be found in\n"
                                           f"/usr/share/common-licenses/{name}."))
    return "\n".join(paragraphs)


def licenses_md(comps: list[bl.Component]) -> str:
    rows = "\n".join(f"| {c.name} | {c.licence} | {PURPOSE.get(c.name.lower(), 'a dependency')} |"
                     for c in sorted(comps, key=lambda c: c.name.lower()))
    return f"""# Licences

SlideTally is free software under the MIT (Expat) licence, © 2026 SlideTally developers.
This file is written by installer/copyright.py from the bundled packages; do not edit it by hand.

It is distributed with the libraries it runs on, each under its own licence:

| component | licence | what it is for |
|---|---|---|
{rows}

The full texts are installed with the app: on Debian and Ubuntu in `/usr/share/doc/slidetally/`
(`copyright`, `licenses/<component>/` with each project's own files at their own paths, and the
bill of materials `slidetally.cdx.json`), on Windows in the `licenses` folder of the installation.

{HEADER.split(chr(10) + chr(10))[1]}

Sample images: `samples/blood/` are from the PBC dataset, CC BY 4.0 — {PBC.split(";")[0]}.
`samples/breast-idc-9022/` are from the Breast Histopathology Images, published by the authors for research use —
{IDC.split(", derived from ")[1].split(". Cite")[0]}.
The models in `resources/models/` were trained by the SlideTally developers (MIT) on those two datasets; see
each model card.
"""


LGPL_PARTS = {"pyside6-essentials": "Qt {v} (the Qt 6 libraries in PySide6/Qt/lib) and Qt for Python {v}",
              "shiboken6": "Shiboken {v} (Qt for Python's bindings)",
              "openslide-bin": "OpenSlide as built by openslide-bin {v}, with the LGPL libraries it compiles in "
                               "(glib, cairo, pixman, gdk-pixbuf, libxml2's neighbours; listed in "
                               "licenses/openslide-bin/licenses/)"}


def source_offer(comps: list[bl.Component]) -> str:
    """The written offer the LGPL asks for when the source does not go with the package (LGPL-2.1 6(c),
    LGPL-3 4(d) with GPL-3 6(b)): which libraries, which versions, how long, from whom."""
    versions = {c.name.lower(): c.version for c in comps}
    listed = "\n".join(f"  - {text.format(v=versions[name])}" for name, text in LGPL_PARTS.items() if name in versions)
    return f"""Written offer of source code (GNU LGPL)

SlideTally's package carries these libraries under the GNU Lesser General Public License, as shared libraries
you may replace (see the copyright file):

{listed}

For at least three years from the date you received this package, and for as long as we offer spare parts or
support for this version, the SlideTally developers will give anyone who asks the complete corresponding source
code of each library above, in the exact version shipped, with the scripts used to build and install it, on a
medium customarily used for software interchange, for no more than the cost of making and sending the copy.
Write to: SlideTally developers <packaging@slidetally.org>, naming the package version
(/usr/share/doc/slidetally/changelog.Debian.gz). The same sources are published by their authors (URLs in the copyright file).
"""


def install_texts(comps: list[bl.Component], doc: Path) -> int:
    targets = bl.plan(comps)
    for target, source in targets.items():
        (doc / "licenses" / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, doc / "licenses" / target)
    return len(targets)


def check_covered(comps: list[bl.Component], internal: Path) -> int:
    covered = 0
    globs = [g for c in comps for g in c.globs] + ["resources/*", "slidetally-*"]
    for path in internal.rglob("*"):
        if path.is_file() or path.is_symlink():
            relative = path.relative_to(internal).as_posix()
            if not any(fnmatch.fnmatch(relative, glob) for glob in globs):
                raise bl.LicenceError(f"no licence for bundled file {relative}: add its distribution or a glob")
            covered += 1
    return covered


def shipped(opencv_licenses: Path | None, bundle: Path) -> list[bl.Component]:
    """What the copyright file, SOURCE-OFFER and the bundle's LICENSES.md list: the components the bundle carries."""
    return components(opencv_licenses, bootloader=True, bundle=bundle)


def check_about_box(comps: list[bl.Component], internal: Path) -> None:
    """The bundle's LICENSES.md (the About box) is the list of these components, or the build stops."""
    bundled = internal / "resources" / "LICENSES.md"
    if not bundled.exists() or bundled.read_text(encoding="utf-8") != licenses_md(comps):
        raise bl.LicenceError(f"{bundled} does not list what the bundle carries: write it with --licenses-md after "
                              "PyInstaller, given the bundle (installer/build.sh)")


def main(argv: list[str]) -> None:
    try:
        if argv[:1] == ["--licenses-md"]:
            opencv_licenses = Path(argv[2]) if len(argv) > 2 else None
            comps = (shipped(opencv_licenses, Path(argv[3])) if len(argv) > 3
                     else components(opencv_licenses, bootloader=False))
            Path(argv[1]).write_text(licenses_md(comps), encoding="utf-8")
            return
        package_root, bundle, opencv = argv
        root = Path(package_root)
        comps = shipped(Path(opencv), root / bundle)
        check_about_box(comps, root / bundle / "_internal")
        covered = check_covered(comps, root / bundle / "_internal")
        doc = root / "usr/share/doc/slidetally"
        copied = install_texts(comps, doc)
        (doc / "copyright").write_text(dep5(comps, bundle), encoding="utf-8")
        (doc / "SOURCE-OFFER").write_text(source_offer(comps), encoding="utf-8")
    except bl.LicenceError as err:
        sys.exit(f"copyright.py: {err}")
    print(f"copyright: {len(comps)} components, {copied} licence texts, {covered} bundled files covered")


if __name__ == "__main__":
    main(sys.argv[1:])
