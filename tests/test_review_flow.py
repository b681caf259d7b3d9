"""The review flow at the bench, driven by keys as a technician would (offscreen window)."""

from __future__ import annotations

import shutil

import pytest
from conftest import SAMPLES, all_review_blood_model, make_tiny_model, open_window, random_rgb, record_dialogs, write_image
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from desktop.core.records.review import REVIEW
from desktop.ui.dialogs import IdentityForm


@pytest.fixture
def bench(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    all_review_blood_model(models)
    folder = tmp_path / "smear"
    folder.mkdir()
    for path in sorted((SAMPLES / "blood").glob("*.jpg"))[::5]:
        shutil.copy(path, folder / path.name)
    answers = {"question": QMessageBox.StandardButton.Yes, "asked": []}
    record_dialogs(monkeypatch, answers)
    monkeypatch.setattr(IdentityForm, "ask", classmethod(lambda cls, *a, **k: ("S-9", "", "Ana Ruiz")))
    return models, folder, tmp_path, answers


def window_for(qtbot, tmp_path, models, settings_file="settings.ini"):
    """The window, active, so that key presses reach it."""
    window = open_window(qtbot, tmp_path, models, settings_file)
    window.activateWindow()
    return window


def classified(qtbot, window, folder):
    window.sessions.open_folder(folder, guess=False)
    n = len(list(folder.iterdir()))
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == n, timeout=30_000)
    return n


def test_the_review_bin_is_reviewed_with_keys_only(qtbot, bench):
    models, folder, tmp, answers = bench
    window = window_for(qtbot, tmp, models)
    n = classified(qtbot, window, folder)
    window.gallery.setFocus()
    window.gallery.setCurrentIndex(window.proxy.index(0, 0))
    assert window.gallery.selected_rows() == [0]  # the focused cell is the selected one
    qtbot.keyClick(window.gallery, Qt.Key.Key_N)  # next awaiting review, in the current bin (All)
    assert window.gallery.selected_rows() == [1]
    qtbot.keyClick(window.gallery, Qt.Key.Key_R)  # the Review bin, first cell selected
    assert window.bins.currentItem().data(Qt.ItemDataRole.UserRole) == REVIEW
    assert window.gallery.selected_rows() == [0]
    first = window.review.selected_cells()[0]
    qtbot.keyClick(window.gallery, Qt.Key.Key_3)  # reclassify: the cell leaves the bin, the next is selected
    assert window.sessions.session.cells([first.file])[0].final_class == "lymphocyte"
    assert window.proxy.rowCount() == n - 1 and window.gallery.selected_rows() == [0]
    qtbot.keyClick(window.gallery, Qt.Key.Key_Enter)  # keypad Enter confirms too
    for _ in range(n - 2):
        qtbot.keyClick(window.gallery, Qt.Key.Key_Return)
    assert window.proxy.rowCount() == 0
    assert not any(c.needs_review for c in window.sessions.session.cells())
    actions = [e.action for e in window.sessions.session.audit()]
    assert actions.count("confirm") == n - 1 and actions.count("reclassify") == 1
    # then sign off and export by keyboard: Ctrl+Shift+S (below target: it asks), Ctrl+E is a file dialog
    qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.sessions.session.signed and any("Sign off anyway" in q for q in answers["asked"])
    window.close()


def test_digits_typed_in_the_find_box_reclassify_nothing(qtbot, bench):
    models, folder, tmp, answers = bench
    window = window_for(qtbot, tmp, models)
    classified(qtbot, window, folder)
    window.gallery.setFocus()
    window.gallery.select_row(0)
    window.find.setFocus()
    qtbot.keyClicks(window.find, "100")
    assert not any(e.action == "reclassify" for e in window.sessions.session.audit())
    assert window.proxy.rowCount() == sum("100" in c.file for c in window.sessions.session.cells())
    window.close()


def test_undo_and_both_redo_shortcuts(qtbot, bench):
    models, folder, tmp, answers = bench
    window = window_for(qtbot, tmp, models)
    classified(qtbot, window, folder)
    window.gallery.setFocus()
    window.gallery.select_row(0)
    cell = window.review.selected_cells()[0]
    qtbot.keyClick(window.gallery, Qt.Key.Key_2)
    final = lambda: window.sessions.session.cells([cell.file])[0].final_class
    assert final() == "eosinophil"
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert final() is None
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert final() == "eosinophil"
    qtbot.keyClick(window.gallery, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert final() == "eosinophil"
    window.close()


def test_esc_cancels_a_running_classification(qtbot, bench):
    models, folder, tmp, answers = bench
    big = tmp / "big"
    big.mkdir()
    for i in range(3000):
        write_image(big / f"c{i:04d}.png", random_rgb(i, (24, 24)))
    window = window_for(qtbot, tmp, models)
    window.sessions.open_folder(big, guess=False)
    qtbot.waitUntil(lambda: window.gallery_model.rowCount() > 0, timeout=30_000)
    qtbot.keyClick(window.gallery, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying(), timeout=10_000)
    assert 0 < len(window.sessions.session.cells()) < 3000
    assert "Cancelled" in window.statusBar().currentMessage()
    window.close()


def test_changing_the_assay_with_a_folder_open_asks_first(qtbot, bench):
    models, folder, tmp, answers = bench
    make_tiny_model(models / "tiny-other.onnx", classes=("basophil", "eosinophil", "lymphocyte"), size=(32, 32),
                    metadata_overrides={"display_name": "Other assay", "provenance": '{"date": "other"}'})
    window = window_for(qtbot, tmp, models)
    classified(qtbot, window, folder)
    before = window.sessions.session
    answers["question"] = QMessageBox.StandardButton.No
    other = window.assay.findData("tiny-other")
    window.assay.setCurrentIndex(other)
    assert answers["asked"][-1].startswith("Change the assay?: Classify the open folder")
    assert window.sessions.session is before and window.sessions.info.key == "tiny-blood"
    assert window.assay.currentData() == "tiny-blood"
    answers["question"] = QMessageBox.StandardButton.Yes
    window.assay.setCurrentIndex(other)
    assert window.sessions.info.key == "tiny-other" and window.sessions.session is not before
    window.close()


def test_a_folder_that_looks_foreign_stops_after_the_first_images(qtbot, bench):
    models, folder, tmp, answers = bench
    make_tiny_model(models / "tiny-blood.onnx", classes=("basophil", "eosinophil", "lymphocyte"), size=(32, 32),
                    metadata_overrides={"ood_threshold": "0.001"})  # everything is Unfamiliar to it
    many = tmp / "many"
    many.mkdir()
    for i in range(300):
        write_image(many / f"c{i:03d}.png", random_rgb(i, (24, 24)))
    answers["question"] = QMessageBox.StandardButton.No
    window = window_for(qtbot, tmp, models)
    window.sessions.open_folder(many, guess=False)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and any("unfamiliar" in q for q in answers["asked"]),
                    timeout=30_000)
    assert len(window.sessions.session.cells()) < 300
    assert window.banner.isVisible() and "unfamiliar" in window.banner.text()
    window.close()


def test_bulk_confirm_of_unfamiliar_cells_asks(qtbot, bench):
    models, folder, tmp, answers = bench
    make_tiny_model(models / "tiny-blood.onnx", classes=("basophil", "eosinophil", "lymphocyte"), size=(32, 32),
                    metadata_overrides={"ood_threshold": "0.001"})
    window = window_for(qtbot, tmp, models)
    window.sessions.open_folder(folder, guess=False)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying(), timeout=30_000)
    window.gallery.setFocus()
    window.gallery.selectAll()
    answers["question"] = QMessageBox.StandardButton.No
    window.review.confirm_selected()
    assert any("Unfamiliar" in q for q in answers["asked"])
    assert not any(c.confirmed for c in window.sessions.session.cells())
    window.close()


def test_open_recent_with_one_entry_lists_the_folder(qtbot, bench):
    models, folder, tmp, answers = bench
    settings = QSettings(str(tmp / "recent.ini"), QSettings.Format.IniFormat)
    settings.setValue("recent", [str(folder)])
    settings.sync()
    window = window_for(qtbot, tmp, models, "recent.ini")
    assert [a.text() for a in window.menu.recent_menu.actions()] == [str(folder)]
    window.close()


def test_labels_say_what_they_mean(qtbot, bench):
    models, folder, tmp, answers = bench
    window = window_for(qtbot, tmp, models)
    classified(qtbot, window, folder)
    cell = window.gallery_model.cells[0]
    window.review.reclassify([cell.file], next(k for k in window.sessions.info.class_keys if k != cell.ai_class))
    changed = window.gallery_model.cells[window.gallery_model.row_of(cell.id)]
    label = window.gallery_model.label(changed)
    assert label.startswith("✎ ") and f"AI: {window.sessions.info.short_label_of(cell.ai_class)}" in label
    assert window.summary.review_bar.text().startswith("Review:")
    window.close()


def test_a_saved_geometry_larger_than_the_screen_is_clamped(qtbot, bench):
    from PySide6.QtCore import QByteArray

    from desktop.ui.main_window import MainWindow

    models, folder, tmp, answers = bench
    first = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "g.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(first)
    first.resize(5000, 4000)
    first.move(3000, 2000)
    first.settings.geometry = first.saveGeometry()
    first.settings.sync()
    saved = QByteArray(first.saveGeometry())
    assert not saved.isEmpty()
    second = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "g.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(second)
    available = second.screen().availableGeometry()
    assert second.width() <= available.width() and second.height() <= available.height()


def test_the_large_view_walks_reclassifies_confirms_and_closes_with_keys(qtbot, bench):
    from desktop.ui.preview import CellViewer

    models, folder, tmp, answers = bench
    window = window_for(qtbot, tmp, models)
    n = classified(qtbot, window, folder)
    window.review.go_to_review()
    viewer = CellViewer(window, window.sessions.folder, window.sessions.info, window.proxy, 0,
                        window.review.reclassify, window.review.confirm_files)
    qtbot.addWidget(viewer)
    viewer.show()
    viewer.activateWindow()
    viewer.setFocus()
    qtbot.waitUntil(lambda: viewer.isActiveWindow(), timeout=3000)
    qtbot.keyClick(viewer, Qt.Key.Key_Right)
    assert viewer.row == 1 and viewer.position.text() == f"2 of {n}"
    qtbot.keyClick(viewer, Qt.Key.Key_Left)
    first = viewer.cell().file
    qtbot.keyClick(viewer, Qt.Key.Key_1)  # reclassify as basophil: it leaves Review, the next takes its place
    assert window.sessions.session.cells([first])[0].final_class == "basophil"
    assert viewer.row == 0 and viewer.cell().file != first and viewer.position.text() == f"1 of {n - 1}"
    second = viewer.cell().file
    qtbot.keyClick(viewer, Qt.Key.Key_Return)
    assert window.sessions.session.cells([second])[0].confirmed
    qtbot.keyClick(viewer, Qt.Key.Key_Escape)
    assert not viewer.isVisible()
    window.close()


def slide_map_window(qtbot, tmp_path):
    """A window on a 4x3 grid of IDC patches, classified, with its slide map shown."""
    models = tmp_path / "models"
    models.mkdir()
    make_tiny_model(models / "tiny-idc.onnx", classes=("normal", "idc"), task="idc-patch", size=(50, 50),
                    metadata_overrides={"review_threshold": "0.0"})
    folder = tmp_path / "slide"
    folder.mkdir()
    for x in range(0, 200, 50):
        for y in range(0, 150, 50):
            write_image(folder / f"9_idx5_x{x}_y{y}_class0.png", random_rgb(x + y, (50, 50)))
    window = window_for(qtbot, tmp_path, models)
    classified(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.summary.heat.isVisible(), timeout=10_000)
    return window


def test_the_slide_map_shows_final_calls_and_a_click_selects_the_patch(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ana", True))
    window = slide_map_window(qtbot, tmp_path)
    window.summary.heat.tile_clicked.emit(2, 1)
    cell = window.review.selected_cells()[0]
    assert (cell.x, cell.y) == (100, 50)
    # the map follows the technician's final call, not the model's probability
    window.review.reclassify([cell.file], "idc")
    from desktop.core.report.summary import idc_summary

    assert idc_summary(window.sessions.session.cells(), window.sessions.info).calls[1, 2] == 1.0
    window.close()


def test_on_the_slide_map_a_drag_pans_and_a_double_click_opens_the_tile_large(qtbot, tmp_path, monkeypatch):
    """Panning must not select the tile under the release; a double-click opens that tile large."""
    from PySide6.QtCore import QPoint

    from desktop.core.inference.slide import MAP_CELL_PX
    from desktop.ui.preview import CellViewer

    opened = []
    monkeypatch.setattr(CellViewer, "exec", lambda viewer: opened.append(viewer.cell().file) or 0)
    window = slide_map_window(qtbot, tmp_path)
    view = window.summary.heat.view
    qtbot.waitUntil(lambda: not view.item.pixmap().isNull(), timeout=10_000)

    def at(column, row) -> QPoint:
        return view.mapFromScene((column + 0.5) * MAP_CELL_PX, (row + 0.5) * MAP_CELL_PX)

    window.gallery.select_row(0)
    before = window.review.selected_cells()[0].file
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=at(0, 0))
    qtbot.mouseMove(view.viewport(), at(2, 1))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=at(2, 1))
    assert window.review.selected_cells()[0].file == before, "a drag selected the tile under the release"
    assert opened == []
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=at(2, 1))
    cell = window.review.selected_cells()[0]
    assert (cell.x, cell.y) == (100, 50) and opened == [cell.file]
    window.close()


def test_reports_before_sign_off_are_preliminary_and_an_empty_review_says_so(qtbot, bench, monkeypatch):
    from desktop.outlets import pdf as report

    models, folder, tmp, answers = bench
    window = window_for(qtbot, tmp, models)
    classified(qtbot, window, folder)
    written = []
    monkeypatch.setattr(report, "write_pdf", lambda path, document: written.append(document.html))
    window.exports.write_pdf(tmp / "r.pdf")
    assert "PRELIMINARY" in written[-1]
    window.sessions.session.confirm([c.file for c in window.sessions.session.cells()], "Ana Ruiz")
    window.records.sign_off()
    window.exports.write_pdf(tmp / "r.pdf")
    assert "PRELIMINARY" not in written[-1] and "Signed off" in written[-1]
    make_tiny_model(models / "calm.onnx", classes=("basophil", "eosinophil", "lymphocyte"), size=(32, 32),
                    metadata_overrides={"provenance": '{"date": "calm"}'})  # review threshold 0: nothing to review
    window.sessions.load_models((models,))  # reloading the list keeps the assay in use
    assert window.sessions.info.key == window.sessions.session.info.key == window.assay.currentData() == "tiny-blood"
    window.assay.setCurrentIndex(window.assay.findData("calm"))
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() > 0, timeout=30_000)
    assert window.sessions.info.key == "calm"
    assert window.summary.review_bar.text() == "Nothing to review"
    window.close()


def test_sign_off_drops_hl7_and_fhir_into_the_lis_folder_and_file_export_writes_them(qtbot, bench, monkeypatch):
    import hl7
    from PySide6.QtWidgets import QFileDialog

    models, folder, tmp, answers = bench
    lis = tmp / "lis-inbox"
    lis.mkdir()
    window = window_for(qtbot, tmp, models)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(lis))
    window.menu.lis_folder.trigger()
    classified(qtbot, window, folder)
    window.sessions.session.confirm([c.file for c in window.sessions.session.cells()], "Ana Ruiz")
    window.records.sign_off()
    assert window.sessions.session.signed
    written = sorted(p.name for p in lis.iterdir())
    assert [n.split("_", 2)[:2] for n in written] == [["S-9", "final"], ["S-9", "final"]]
    assert {n.rsplit(".", 1)[-1] for n in written} == {"hl7", "json"} and not any(n.startswith(".") for n in written)
    message = hl7.parse(next(lis.glob("*.hl7")).read_bytes().decode())
    assert str(message.segment("OBR")[25]) == "F"
    # File → Export → HL7 / FHIR write the same report where the technician says
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp / "by-hand.hl7"), ""))
    window.menu.hl7.trigger()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp / "by-hand.fhir.json"), ""))
    window.menu.fhir.trigger()
    assert (tmp / "by-hand.hl7").read_bytes().startswith(b"MSH|") and (tmp / "by-hand.fhir.json").exists()
    window.close()
