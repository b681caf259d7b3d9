"""The licence collection of installer/copyright.py run on the installed packages of this venv (no build needed):
each distribution's texts under its own folder at their own paths, real holders, the samples' true licences."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "installer"))
import bundle_licences as bl
import copyright as dep5


@pytest.fixture(scope="module")
def comps() -> list[bl.Component]:
    return [c for c in dep5.components(None, bootloader=False) if c.name != "opencv"]  # OpenCV's come from its build


@pytest.fixture(scope="module")
def doc(comps, tmp_path_factory) -> Path:
    doc = tmp_path_factory.mktemp("doc")
    dep5.install_texts(comps, doc)
    (doc / "copyright").write_text(dep5.dep5(comps, "usr/lib/slidetally"), encoding="utf-8")
    return doc


def test_numpy_keeps_its_whole_licence_naming_openblas_lapack_and_gfortran(doc):
    numpy = doc / "licenses/numpy/LICENSE.txt"
    text = numpy.read_text(encoding="utf-8")
    assert "OpenBLAS" in text and "LAPACK" in text and "GCC RUNTIME LIBRARY EXCEPTION" in text.upper()
    assert numpy.stat().st_size > 20_000  # NumPy's own, not a vendored zlib text written over it
    assert (doc / "licenses/numpy/numpy/_core/src/highway/LICENSE").exists()  # the wheel's own sub-paths


def test_each_distribution_keeps_its_own_text(doc):
    assert "Md Nazrul Islam" in (doc / "licenses/fhir.resources/LICENSE").read_text(encoding="utf-8")
    assert (doc / "licenses/fhir-core/LICENSE").exists()
    family = {name: (doc / f"licenses/{name}/LICENSE").read_text(encoding="utf-8")
              for name in ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")}
    assert len(set(family.values())) == 4, "the pydantic family's licences collapsed into one"
    assert (doc / "licenses/onnxruntime/onnxruntime/ThirdPartyNotices.txt").exists()
    assert (doc / "licenses/openslide-bin/licenses/OpenSlide/COPYING.LESSER").exists()


def test_copyright_names_real_holders_and_the_samples_licences(doc):
    text = (doc / "copyright").read_text(encoding="utf-8")
    paragraphs = {p.split("\n", 1)[0]: p for p in text.split("\n\n")}
    numpy = next(p for head, p in paragraphs.items() if "_internal/numpy/*" in head)
    assert "NumPy Developers" in numpy and "The OpenBLAS Project" in numpy and "psutil" not in numpy
    fhir = next(p for head, p in paragraphs.items() if "_internal/fhir/*" in head)
    assert "Md Nazrul Islam" in fhir and "BSD-3-Clause" in fhir
    blood = next(p for head, p in paragraphs.items() if "samples/blood" in head)
    assert "License: CC-BY-4.0" in blood and "Acevedo" in blood and "Data in Brief" in blood
    idc = next(p for head, p in paragraphs.items() if "breast-idc" in head)
    assert "Janowczyk" in idc and "Expat" not in idc
    # lintian's copyright-not-using-common-license-for-lgpl (an error) unless the common texts are referred to
    assert "/usr/share/common-licenses/LGPL-2.1" in text and "/usr/share/common-licenses/LGPL-3" in text
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("Files:"):
            assert "\nCopyright: " in paragraph and "\nLicense: " in paragraph, paragraph


def test_a_collision_or_a_missing_text_stops_the_build(tmp_path):
    text = tmp_path / "LICENSE"
    text.write_text("x", encoding="utf-8")
    twice = [bl.Component("a", "1", "MIT", {"LICENSE": text}), bl.Component("a", "1", "MIT", {"LICENSE": text})]
    with pytest.raises(bl.LicenceError, match="two licence texts"):
        bl.plan(twice)
    with pytest.raises(bl.LicenceError, match="ships no licence text"):
        bl.plan([bl.Component("b", "1", "MIT", {})])


def test_licenses_md_lists_what_the_bundle_carries(comps):
    md = dep5.licenses_md(comps)
    for name in ("hl7apy", "fhir.resources", "pydantic", "onnx", "openslide-bin", "Pillow", "LGPL-2.1-only", "CC BY 4.0"):
        assert name in md, name
    assert "FFmpeg" not in md


def test_opencvs_licence_line_is_made_from_the_texts_of_what_it_compiles_in(tmp_path):
    """Issue 42: the line named only some parts; now each part with a text is named, and a text of a part the build
    does not know stops it (a new codec must get its licence before it ships)."""
    text = tmp_path / "t"
    text.write_text("x")
    texts = {"LICENSE": text, "3rdparty/libjpeg-turbo-README.ijg": text, "3rdparty/libpng-LICENSE": text,
             "3rdparty/dlpack-LICENSE": text, "3rdparty/SoftFloat-COPYING.txt": text}
    line = dep5.opencv_licence(texts)
    assert line.startswith("Apache-2.0 AND ")
    for part in ("(libjpeg-turbo)", "(libpng)", "Apache-2.0 (dlpack)", "BSD-3-Clause (SoftFloat)"):
        assert part in line
    with pytest.raises(bl.LicenceError, match="openjpeg-LICENSE"):
        dep5.opencv_licence({**texts, "3rdparty/openjpeg-LICENSE": text})


def test_a_bundled_about_box_list_other_than_the_copyright_files_stops_the_build(comps, tmp_path):
    """Issue 42: the About box listed flatbuffers, which the bundle does not carry. The package step checks that the
    bundle's LICENSES.md lists exactly the components of the copyright file."""
    carried = [c for c in comps if c.name != "flatbuffers"]  # as copyright.shipped() reads them from a bundle
    assert len(carried) < len(comps)
    resources = tmp_path / "_internal" / "resources"
    resources.mkdir(parents=True)
    (resources / "LICENSES.md").write_text(dep5.licenses_md(carried), encoding="utf-8")
    dep5.check_about_box(carried, tmp_path / "_internal")
    (resources / "LICENSES.md").write_text(dep5.licenses_md(comps), encoding="utf-8")  # every dependency's
    with pytest.raises(bl.LicenceError, match="does not list what the bundle carries"):
        dep5.check_about_box(carried, tmp_path / "_internal")
