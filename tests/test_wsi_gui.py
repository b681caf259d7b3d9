"""A whole-slide image in the window (offscreen): opened as a session of its own, the technician asked for
its scale when the file does not say it, and the slide's own overview under the heat map."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tiny_model, open_window
from PySide6.QtWidgets import QInputDialog, QMessageBox
from slides import write_pyramid

from desktop.core.inference.slide import MAP_CELL_PX
from desktop.core.report.summary import idc_summary

pytest.importorskip("tifffile")
PINK, PEN = (200, 110, 170), (30, 60, 200)


def test_a_slide_without_its_scale_asks_for_it_and_shows_its_overview_under_the_map(qtbot, tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    make_tiny_model(models / "idc.onnx", ("normal", "idc"), (50, 50), "idc-patch")
    canvas = np.full((300, 400, 3), 255, np.uint8)  # 1 px = 4 µm: 6 x 8 model tiles
    canvas[50:200, 100:300] = PINK  # 3 rows x 4 columns of tissue ...
    canvas[100:150, 150:200] = PEN  # ... with a blue pen mark on one tile: not a tile, but on the slide
    slide = write_pyramid(tmp_path / "case 12.tif", canvas, upsample=4, mpp=None)
    asked = []
    monkeypatch.setattr(QInputDialog, "getDouble", lambda *a, **k: (asked.append(a[2]) or 1.0, True))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana Ruiz", True))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    window = open_window(qtbot, tmp_path, models)
    assert window.menu.open_slide.text() == "Open &slide…"
    window.sessions.open_folder(slide)
    assert asked and "does not record its pixel size" in asked[0]
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == 11,
                    timeout=30_000)
    qtbot.waitUntil(lambda: window.summary.mosaic is not None, timeout=10_000)

    cells = window.sessions.session.cells()
    assert "1 µm/px from the technician" in window.sessions.session.record().slide_scale
    calls = idc_summary(cells, window.sessions.info).calls
    assert calls.shape == (4, 6)  # the map starts at the slide's corner: tiles at rows 1-3, columns 2-5
    assert np.isnan(calls[2, 3]) and np.isnan(calls[0]).all()  # the pen's tile and the glass: not classified
    mosaic = window.summary.mosaic  # the whole slide under the map, glass and ink included
    cell = MAP_CELL_PX
    assert mosaic.shape[:2] == (6 * cell, 8 * cell)

    def colour(row: int, column: int) -> np.ndarray:
        return mosaic[row * cell + 2:(row + 1) * cell - 2, column * cell + 2:(column + 1) * cell - 2].reshape(-1, 3).mean(axis=0)

    assert np.abs(colour(1, 2) - PINK).max() < 6 and np.abs(colour(2, 3) - PEN).max() < 10 and colour(0, 0).min() > 250
    overlay = window.summary.heat.overlay()
    assert overlay.shape[:2] == (4 * cell, 6 * cell)  # the mosaic's top-left part lies under the calls
    pen_tile = (slice(2 * cell, 3 * cell), slice(3 * cell, 4 * cell))
    assert (overlay[pen_tile] == mosaic[pen_tile]).all()  # no call painted there: the slide as it is


def test_the_slide_picture_shows_before_its_first_call(qtbot, tmp_path):
    """What the window shows of a slide whose tiles are still being read: its picture, no call painted."""
    from desktop.core.inference.model import Model
    from desktop.core.records.domain import SessionRecord
    from desktop.core.report.assay_report import build_report
    from desktop.ui.summary_panel import SummaryPanel

    info = Model(make_tiny_model(tmp_path / "idc.onnx", ("normal", "idc"), (50, 50), "idc-patch")).info
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show()
    picture = np.full((6 * MAP_CELL_PX, 8 * MAP_CELL_PX, 3), 250, np.uint8)
    picture[10:40, 20:60] = PINK
    panel.set_mosaic(picture)
    panel.show_report(build_report([], info, SessionRecord("slide.tif", info.key, info.version, info.sha256, "open"),
                                   codes={}))
    assert panel.heat.isVisible() and (panel.heat.overlay() == picture).all()
    panel.set_mosaic(None)  # a folder of patches before its first call: nothing to show yet
    panel.show_report(build_report([], info, SessionRecord("f", info.key, info.version, info.sha256, "open"), codes={}))
    assert not panel.heat.isVisible()
