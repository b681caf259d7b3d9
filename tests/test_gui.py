"""The technician's loop in the real window (offscreen): open, classify, reclassify by key,
undo, export, sign-off refused then allowed, reopen restores."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
from conftest import SAMPLES, make_tiny_model, open_window
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from desktop.core.records.review import REVIEW
from desktop.ui.dialogs import IdentityForm


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
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana Ruiz", True))
    questions = []  # every question the app asks is recorded and answered Yes
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: (questions.append(a[2]), QMessageBox.StandardButton.Yes)[1])
    monkeypatch.setattr(IdentityForm, "ask", classmethod(lambda cls, *a, **k: ("S-17", "", "Ana Ruiz")))
    return models, folder, tmp_path, warnings


def wait_classified(qtbot, window, n):
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == n, timeout=30_000)


def test_technician_loop(qtbot, setup, tmp_path, monkeypatch):
    models, folder, tmp, warnings = setup
    n = len(list(folder.iterdir()))
    window = open_window(qtbot, tmp, models)
    window.sessions.open_folder(folder, guess=False)
    wait_classified(qtbot, window, n)
    assert "awaiting review" in window.summary.text.toPlainText()

    # reclassify the first cell with its number key, then undo
    window.gallery.setFocus()
    window.activateWindow()
    first = window.proxy.index(0, 0)
    window.gallery.setCurrentIndex(first)
    cell = window.proxy.data(first, Qt.ItemDataRole.UserRole + 1)
    qtbot.keyClick(window.gallery, Qt.Key.Key_3)
    final = lambda: window.sessions.session.cells([cell.file])[0].final_class
    qtbot.waitUntil(lambda: final() == "lymphocyte", timeout=3000)
    last = window.sessions.session.audit()[-1]
    assert last.action == "reclassify" and last.operator == "Ana Ruiz"
    window.review.undo()
    assert final() is None
    window.review.redo()
    assert final() == "lymphocyte"
    # the gallery follows the session's events: no polling
    assert window.gallery_model.cells[window.gallery_model.row_of(cell.id)].final_class == "lymphocyte"

    # export CSV: one row per image
    paths = window.exports.write_csv(tmp / "export-cells.csv")
    text = paths[0].read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "file")
    assert len(rows) - header - 1 == n
    assert paths[1].exists()

    # sign-off refused while Review cells remain, allowed once all are confirmed
    window.records.sign_off()
    assert warnings and "not confirmed" in warnings[-1]
    assert not window.sessions.session.signed
    review_row = next(r for r in range(window.bins.count()) if window.bins.item(r).data(Qt.ItemDataRole.UserRole) == REVIEW)
    window.bins.setCurrentRow(review_row)
    window.gallery.selectAll()
    window.review.confirm_selected()
    window.records.sign_off()
    record = window.sessions.session.record()
    assert record.signed and record.signed_by == "Ana Ruiz" and record.specimen_id == "S-17"
    assert "S-17" in window.windowTitle()
    # a PDF report is written
    assert window.exports.write_pdf(tmp / "report.pdf")
    assert (tmp / "report.pdf").read_bytes().startswith(b"%PDF")
    window.close()

    # reopening the folder restores every call without classifying again
    again = open_window(qtbot, tmp, models)
    again.sessions.open_folder(folder, guess=False)
    wait_classified(qtbot, again, n)
    restored = again.sessions.session.cells([cell.file])[0]
    assert restored.final_class == "lymphocyte" and again.sessions.session.signed
    assert all(c.confirmed for c in again.sessions.session.cells())
    again.close()


def test_gallery_stays_sorted_as_batches_arrive_and_filters_by_bin(qtbot):
    import random
    from dataclasses import replace

    from desktop.core.records.domain import Cell
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
    # the bins' counts are kept as cells arrive and change, not recounted: they must agree with a recount
    from collections import Counter

    from desktop.core.records.review import cell_bin

    model.upsert([replace(cells[7], confidence=0.999), replace(cells[8], confirmed=True)])  # moved; confirmed
    counts = model.list.counts()  # the gallery's CellList (the state's cells in the window)
    assert counts == dict(Counter(cell_bin(c) for c in model.cells))
    assert sum(counts.values()) == 2000 and counts["monocyte"] == 1
    proxy.set_bin("monocyte")
    assert proxy.rowCount() == 1
    proxy.set_bin(REVIEW)
    review_conf = [proxy.data(proxy.index(r, 0), Qt.ItemDataRole.UserRole + 1).confidence for r in range(proxy.rowCount())]
    assert review_conf == sorted(review_conf) and all(c < 0.5 for c in review_conf)


def _many(folder, n, size=(24, 24)):
    from conftest import random_rgb, write_image

    folder.mkdir()
    for i in range(n):
        write_image(folder / f"c{i:04d}.png", random_rgb(i, size))
    return folder


def test_a_late_signal_from_the_previous_folder_does_not_stop_the_next(qtbot, setup):
    models, folder, tmp, warnings = setup
    big = _many(tmp / "big", 600)
    window = open_window(qtbot, tmp, models)
    window.sessions.open_folder(big, guess=False)
    first_worker = window.sessions.worker
    window.sessions.open_folder(folder, guess=False)  # the first run is cancelled; its signals arrive late
    n = len(list(folder.iterdir()))
    wait_classified(qtbot, window, n)
    assert first_worker is not window.sessions.worker
    assert {c.file for c in window.gallery_model.cells} == {p.name for p in folder.iterdir()}
    # the current session still reaches the gallery after the stale worker ended
    cell = window.gallery_model.cells[0]
    window.sessions.session.reclassify([cell.file], "eosinophil", "Ana")
    qtbot.waitUntil(lambda: window.gallery_model.cells[window.gallery_model.row_of(cell.id)].final_class == "eosinophil",
                    timeout=3000)
    window.close()


def test_closing_while_scanning_or_classifying_stops_quickly_and_keeps_every_call(qtbot, setup):
    import time

    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session

    models, folder, tmp, warnings = setup
    big = _many(tmp / "big", 3000)
    window = open_window(qtbot, tmp, models)
    window.sessions.open_folder(big, guess=False)
    window.close()  # while planning (scanning the folder)
    assert window.sessions.classify_thread is None and window.sessions.session is None

    window = open_window(qtbot, tmp, models)
    window.sessions.open_folder(big, guess=False)
    qtbot.waitUntil(lambda: window.gallery_model.rowCount() > 100, timeout=30_000)
    shown = window.gallery_model.rowCount()  # (closing empties the gallery: its session is no longer open)
    start = time.monotonic()
    window.close()  # Ctrl+Q while classifying
    assert time.monotonic() - start < 2.0
    session = Session.open(big, Model(models / "tiny-blood.onnx"), tmp / "data")
    assert len(session.cells()) >= shown > 0
    session.close()


def test_a_refused_action_never_enters_the_undo_stack(qtbot, setup):
    models, folder, tmp, warnings = setup
    window = open_window(qtbot, tmp, models)
    window.sessions.open_folder(folder, guess=False)
    wait_classified(qtbot, window, len(list(folder.iterdir())))
    files = [c.file for c in window.sessions.session.cells()]
    window.review.reclassify(files[:1], "lymphocyte")
    window.sessions.session.confirm(files, "Ana Ruiz")
    window.records.sign_off()
    assert window.sessions.session.signed and window.undo_stack.count() == 0
    window.review.reclassify(files[:1], "basophil")  # refused: read-only
    assert window.undo_stack.count() == 0 and "read-only" in warnings[-1]
    window.review.undo()  # nothing to undo, no crash dialog
    assert window.sessions.session.cells(files[:1])[0].final_class == "lymphocyte"
    window.close()


def test_signed_session_banner_and_audit_view(qtbot, setup, monkeypatch):
    from conftest import random_rgb, write_image

    from desktop.ui.audit_view import AuditDialog

    models, folder, tmp, warnings = setup
    window = open_window(qtbot, tmp, models)
    window.sessions.open_folder(folder, guess=False)
    n = len(list(folder.iterdir()))
    wait_classified(qtbot, window, n)
    window.sessions.session.confirm([c.file for c in window.sessions.session.cells()], "Ana Ruiz")
    window.records.sign_off()
    window.close()
    write_image(folder / "late.png", random_rgb(5, (40, 40)))
    again = open_window(qtbot, tmp, models)
    again.sessions.open_folder(folder, guess=False)
    qtbot.waitUntil(lambda: again.banner.isVisible(), timeout=10_000)
    assert "late.png" in again.banner.text() and "signed off" in again.banner.text()
    assert again.gallery_model.rowCount() == n  # nothing taken in
    shown = []
    monkeypatch.setattr(AuditDialog, "exec", lambda self: shown.append(self))
    again.records.show_audit()
    dialog = shown[0]
    assert dialog.proxy.rowCount() >= n + 1
    dialog.filter.setText("sign-off")
    assert dialog.proxy.rowCount() == 1
    assert again.exports.write_audit_csv(tmp / "audit.csv")
    again.close()
