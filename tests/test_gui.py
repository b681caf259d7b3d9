"""The technician's loop in the real window (offscreen): open, classify, reclassify by key,
undo, export, sign-off refused then allowed, reopen restores."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
from conftest import SAMPLES, make_tiny_model
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from desktop.core.review import REVIEW


@pytest.fixture
def setup(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    classes = ("basophil", "eosinophil", "lymphocyte")
    make_tiny_model(models / "tiny-blood.onnx", classes=classes, size=(32, 32),
                    metadata_overrides={"review_threshold": "0.99"})  # every call goes to Review
    folder = tmp_path / "Probe 17 – Blut"
    folder.mkdir()
    for path in sorted((SAMPLES / "blood").glob("*.jpg"))[::4]:
        shutil.copy(path, folder / path.name)
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    return models, folder, tmp_path, warnings


def make_window(qtbot, tmp_path, models):
    from desktop.ui.main_window import MainWindow

    window = MainWindow(data_root=tmp_path / "data",
                        settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.load_models((models,))
    return window


def wait_classified(qtbot, window, n):
    qtbot.waitUntil(lambda: not window.is_classifying() and window.gallery_model.rowCount() == n, timeout=30_000)


def test_technician_loop(qtbot, setup, tmp_path, monkeypatch):
    models, folder, tmp, warnings = setup
    n = len(list(folder.iterdir()))
    window = make_window(qtbot, tmp, models)
    window.open_folder(folder, guess=False)
    wait_classified(qtbot, window, n)
    assert "awaiting review" in window.summary.text.toPlainText()

    # reclassify the first cell with its number key, then undo
    window.gallery.setFocus()
    window.activateWindow()
    first = window.proxy.index(0, 0)
    window.gallery.setCurrentIndex(first)
    cell = window.proxy.data(first, Qt.ItemDataRole.UserRole + 1)
    qtbot.keyClick(window.gallery, Qt.Key.Key_3)
    qtbot.waitUntil(lambda: window.store.cell(cell.id).final_class == "lymphocyte", timeout=3000)
    assert window.store.audit()[-1][2] == "reclassify"
    window.undo_stack.undo()
    assert window.store.cell(cell.id).final_class is None
    window.undo_stack.redo()
    assert window.store.cell(cell.id).final_class == "lymphocyte"

    # export CSV: one row per image
    paths = window.write_csv(tmp / "export-cells.csv")
    text = paths[0].read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "file")
    assert len(rows) - header - 1 == n
    assert paths[1].exists()

    # sign-off refused while Review cells remain, allowed once all are confirmed
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana Ruiz", True))
    window.sign_off()
    assert warnings and "not confirmed" in warnings[-1]
    assert not window.store.signed_off
    review_row = next(r for r in range(window.bins.count()) if window.bins.item(r).data(Qt.ItemDataRole.UserRole) == REVIEW)
    window.bins.setCurrentRow(review_row)
    window.gallery.selectAll()
    window.confirm_selected()
    window.sign_off()
    assert window.store.signed_off and window.store.meta("signed_by") == "Ana Ruiz"
    # a PDF report is written
    assert window.write_pdf(tmp / "report.pdf")
    assert (tmp / "report.pdf").read_bytes().startswith(b"%PDF")
    window.close()

    # reopening the folder restores every call without classifying again
    again = make_window(qtbot, tmp, models)
    planned = []
    again.open_folder(folder, guess=False)
    again.worker.planned.connect(lambda todo, known: planned.append(todo))
    wait_classified(qtbot, again, n)
    restored = again.store.cell(cell.id)
    assert restored.final_class == "lymphocyte" and again.store.signed_off
    assert all(c.confirmed for c in again.store.cells())
    again.close()


def test_gallery_stays_sorted_as_batches_arrive_and_filters_by_bin(qtbot):
    import random
    from dataclasses import replace

    from desktop.core.store import Cell
    from desktop.ui.gallery import BinFilter, GalleryModel, ThumbnailCache

    def cell(i, conf, cls="lymphocyte"):
        return Cell(i, f"{i}.jpg", cls, conf, (), None, None, False, conf < 0.5, "", "", None, None, None, False, None)

    model = GalleryModel(ThumbnailCache())
    proxy = BinFilter()
    proxy.setSourceModel(model)
    rng = random.Random(4)
    cells = [cell(i, rng.random()) for i in range(1, 2001)]
    model.reset(cells[:300], None)
    for start in range(300, 2000, 170):  # batches as the classifier delivers them
        model.upsert(cells[start:start + 170])
    shown = [model.data(model.index(r), Qt.ItemDataRole.UserRole + 1) for r in range(model.rowCount())]
    assert [c.id for c in shown] == [c.id for c in sorted(cells, key=lambda c: (c.confidence, c.id))]
    # a reclassified cell keeps its place and leaves its bin
    target = cells[1500]
    row = model.row_of(target.id)
    model.upsert([replace(target, final_class="monocyte")])
    assert model.row_of(target.id) == row and model.cells[row].final_class == "monocyte"
    proxy.set_bin("monocyte")
    assert proxy.rowCount() == 1
    proxy.set_bin(REVIEW)
    review_conf = [proxy.data(proxy.index(r, 0), Qt.ItemDataRole.UserRole + 1).confidence for r in range(proxy.rowCount())]
    assert review_conf == sorted(review_conf) and all(c < 0.5 for c in review_conf)
