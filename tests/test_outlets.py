"""The outlets render one AssayReport each, without a window: the PDF's thumbnails (their size, and
tiles cut at the model's patch size), the LIS hand-off after sign-off, and a CLI that loads no
Qt widgets however it is used."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import ROOT, make_tiny_model, write_image
from patch_model import NORMAL_RGB, PATCH, make_patch_model, paint_slide

from desktop.core.errors import ActionRefused
from desktop.core.records.session import Session
from desktop.core.report.session_report import session_report
from desktop.outlets.lis import hand_off
from desktop.outlets.pdf import THUMB_PX, report_document

CHECKERED = ["NI" * 5, "IN" * 5] * 3  # every tile's neighbours are of the other colour


def _pixels(image) -> np.ndarray:
    image = image.convertToFormat(image.Format.Format_RGB888)
    rows = [bytes(image.constScanLine(y))[:3 * image.width()] for y in range(image.height())]
    return np.frombuffer(b"".join(rows), np.uint8).reshape(image.height(), image.width(), 3)


def test_pdf_thumbnails_are_thumb_px_and_tiles_are_cut_at_the_models_patch_size(qapp, tmp_path):
    models, folder = tmp_path / "models", tmp_path / "slide"
    models.mkdir()
    folder.mkdir()
    model = make_patch_model(models / "idc32.onnx")
    write_image(folder / "slide.png", paint_slide(CHECKERED))
    session = Session.open(folder, model, tmp_path / "data")
    try:
        session.classify()
        session.confirm([c.file for c in session.cells()], "Ana Ruiz")
        report = session_report(session, operator="Ana Ruiz")
        document = report_document(report, folder)
    finally:
        session.close()
    thumbs = {url: image for url, image in document.images.items() if url.startswith("slidetally://thumb/")}
    assert thumbs, "the gallery page shows the final calls"
    for url, image in thumbs.items():
        assert (image.width(), image.height()) == (THUMB_PX, THUMB_PX), url
    # a tile cut at the model's 32 px is one colour; cut any larger it takes in its neighbours' colour
    mixed = [url for url, image in thumbs.items() if not (_pixels(image) == _pixels(image)[0, 0]).all()]
    assert not mixed, f"tiles cut larger than {PATCH} px: {mixed[:3]}"
    assert any((_pixels(image)[0, 0] == NORMAL_RGB).all() for image in thumbs.values())

def test_the_lis_hand_off_works_without_a_window_and_only_after_sign_off(tmp_path, good_folder):
    model = make_tiny_model(tmp_path / "tiny.onnx", metadata_overrides={"review_threshold": "0"})
    drop = tmp_path / "lis"
    drop.mkdir()
    session = Session.open(good_folder, model, tmp_path / "data")
    try:
        session.classify()
        try:
            hand_off(session, drop, operator="Ana Ruiz")
            raise AssertionError("a preliminary report was handed to the LIS")
        except ActionRefused:
            pass
        session.sign_off("Ana Ruiz", "B-1187")
        hl7, fhir = hand_off(session, drop, operator="Ana Ruiz")
    finally:
        session.close()
    assert hl7.parent == drop and hl7.name.startswith("B-1187_final_") and fhir.name.endswith(".fhir.json")
    message = hl7.read_text(encoding="utf-8")
    assert "ORU^R01" in message and "|F|" in message


def test_the_core_the_outlets_and_the_cli_import_no_qt_widgets_even_printing_a_slide_pdf(tmp_path):
    models, folder = tmp_path / "models", tmp_path / "slide"
    models.mkdir()
    folder.mkdir()
    model = make_patch_model(models / "idc32.onnx")
    write_image(folder / "slide.png", paint_slide(CHECKERED))
    code = (
        "import importlib, pkgutil, sys\n"
        "import desktop.core as core, desktop.outlets as outlets\n"
        "from desktop.cli import main\n"
        "for package in (core, outlets):\n"
        "    for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        f"code = main(['classify', {str(folder)!r}, '--model', {str(model)!r}, '--data-dir', {str(tmp_path / 'd')!r},\n"
        f"             '--pdf', {str(tmp_path / 'r.pdf')!r}, '--force'])\n"
        "print('QTWIDGETS' if 'PySide6.QtWidgets' in sys.modules else 'CLEAN', code)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] in (["CLEAN", "0"], ["CLEAN", "4"]), out.stdout[-500:] + out.stderr[-1000:]
    assert (tmp_path / "r.pdf").stat().st_size > 0
