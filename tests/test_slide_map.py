"""The slide map in the window (offscreen) with a 32 px patch model: thumbnails, mosaic and clicks
on the model's grid; the map shows the final calls, and "AI only" the model's own view."""

from __future__ import annotations

import numpy as np
from conftest import open_window, write_image
from patch_model import NORMAL_RGB, PATCH, make_patch_model, paint_slide
from PySide6.QtWidgets import QInputDialog, QMessageBox

from desktop.core.inference.slide import MAP_CELL_PX
from desktop.core.report.summary import idc_summary
from desktop.core.thumbnails import load_cell_image

TISSUE = ["NNNN......", "NNNNII....", "NNNNII....", "NNNNII....", "NNNNII....", ".........."]


def test_a_32px_model_shows_its_tiles_mosaic_and_final_calls_with_the_ai_view_apart(qtbot, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    make_patch_model(models / "idc32.onnx")
    folder = tmp_path / "slide"
    folder.mkdir()
    write_image(folder / "slide.png", paint_slide(TISSUE))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana Ruiz", True))
    window = open_window(qtbot, tmp_path, models)
    window.sessions.open_folder(folder, guess=False)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == 28, timeout=30_000)
    slide_map = window.summary.heat
    qtbot.waitUntil(lambda: window.summary.mosaic is not None and slide_map.isVisible(), timeout=10_000)

    # tiles are cut, shown and reassembled at the model's 32 px, not 50
    cells = window.sessions.session.cells()
    slide = idc_summary(cells, window.sessions.info)
    assert slide.calls.shape == (5, 6)
    assert window.summary.mosaic.shape[:2] == (5 * MAP_CELL_PX, 6 * MAP_CELL_PX)
    tile = next(c for c in cells if (c.x, c.y) == (64, 96))
    crop = load_cell_image(folder, tile.file, patch_size=window.sessions.info.patch.size)
    assert crop.shape == (PATCH, PATCH, 3) and (crop == NORMAL_RGB).all()

    # a click on the map selects the patch under it
    slide_map.tile_clicked.emit(2, 3)
    selected = window.review.selected_cells()[0]
    assert (selected.x, selected.y) == (64, 96)

    final_before = slide_map.overlay()
    slide_map.ai_only.setChecked(True)
    ai_before = slide_map.overlay()
    assert slide_map.ai_legend.isVisibleTo(slide_map) and not slide_map.final_legend.isVisibleTo(slide_map)
    assert "28.6% IDC" in slide_map.ai_only.text()  # 8 of 28 tiles, before review
    slide_map.ai_only.setChecked(False)

    window.review.reclassify([selected.file], "idc")  # the technician calls it IDC
    qtbot.waitUntil(lambda: not np.array_equal(slide_map.overlay(), final_before), timeout=5_000)
    changed = np.any(slide_map.overlay() != final_before, axis=2)
    rows, cols = np.nonzero(changed)
    assert {(c // MAP_CELL_PX, r // MAP_CELL_PX) for r, c in zip(rows, cols)} == {(2, 3)}
    assert "9 of 28" in window.summary.text.toPlainText()  # the reported fraction follows the final calls
    slide_map.ai_only.setChecked(True)
    np.testing.assert_array_equal(slide_map.overlay(), ai_before)  # the AI-only view does not move
    assert "28.6% IDC" in slide_map.ai_only.text()
    window.close()
