"""One evented app state for the window: the cells the gallery shows are a core list that announces its changes;
controllers are given their collaborators (no window to reach through) and follow the state's signals; the
summary is counted from the state's cells, not from the gallery's Qt model."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SAMPLES, make_tiny_model

from desktop.core.records.cell_list import CellList
from desktop.core.records.domain import Cell

UI = Path(__file__).resolve().parents[1] / "desktop" / "ui"


def _cell(i: int, confidence: float, call: str = "lymphocyte") -> Cell:
    return Cell(i, f"{i}.jpg", call, confidence, (), None, None, False, confidence < 0.5, "", "", None, None, None,
                False, None)


def test_the_cell_list_announces_each_change_before_and_after_making_it():
    cells = CellList()
    seen: list[tuple] = []
    for name in ("resetting", "reset", "inserting", "inserted", "removing", "removed", "changed"):
        getattr(cells.events, name).connect(lambda *args, name=name: seen.append((name, *args, len(cells))))
    cells.replace([_cell(1, 0.9), _cell(2, 0.2)])
    assert seen == [("resetting", 0), ("reset", 2)]  # before: still the old length; after: the new one
    seen.clear()
    cells.upsert([_cell(3, 0.5), _cell(4, 0.6)])  # both land between 0.2 and 0.9: one block
    assert seen == [("inserting", 1, 2, 2), ("inserted", 4)]
    assert [c.id for c in cells.cells] == [2, 3, 4, 1]
    seen.clear()
    cells.upsert([replace(cells.cells[1], final_class="monocyte")])  # a review: same place
    assert seen == [("changed", 1, 4)] and cells.counts()["monocyte"] == 1
    seen.clear()
    cells.upsert([replace(cells.cells[0], confidence=0.95)])  # moved: out, then in at its new place
    assert seen == [("removing", 0, 4), ("removed", 3), ("inserting", 3, 1, 3), ("inserted", 4)]
    assert [c.id for c in cells.cells] == [3, 4, 1, 2] and cells.row_of(2) == 3 and cells.row_of_file("1.jpg") == 2


def _controller_classes():
    from desktop.ui.export_controller import Exports
    from desktop.ui.lab_actions import LabActions
    from desktop.ui.operator import WhoIsWorking
    from desktop.ui.record_controller import RecordController
    from desktop.ui.review_actions import ReviewActions
    from desktop.ui.session_controller import SessionController

    return SessionController, RecordController, ReviewActions, Exports, LabActions, WhoIsWorking


def test_controllers_are_given_their_collaborators_not_the_window():
    for cls in _controller_classes():
        parameters = inspect.signature(cls.__init__).parameters
        assert "window" not in parameters and "state" in parameters, cls.__name__
        annotations = " ".join(str(p.annotation) for p in parameters.values())
        assert "MainWindow" not in annotations, cls.__name__
    # nothing in the UI reaches other controllers or widgets through a held window (`self.w.`): the target was <= 30
    uses = {path.name: len(re.findall(r"\bself\.w\.", path.read_text(encoding="utf-8"))) for path in UI.glob("*.py")}
    assert sum(uses.values()) <= 30, uses
    assert sum(uses.values()) == 0, uses


def test_no_controller_reads_the_gallerys_qt_model():
    """The summary, the bins' counts and the review's lookups read the state's cells (core), never the Qt model."""
    for module in ("record_controller", "review_actions", "session_controller", "export_controller"):
        tree = ast.parse((UI / f"{module}.py").read_text(encoding="utf-8"))
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert "gallery_model" not in names, module


@pytest.fixture
def blood(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    model_path = make_tiny_model(models / "tiny-blood.onnx", classes=("basophil", "eosinophil", "lymphocyte"),
                                 size=(32, 32))
    folder = tmp_path / "blood"
    folder.mkdir()
    for path in sorted((SAMPLES / "blood").glob("*.jpg"))[:6]:
        shutil.copy(path, folder / path.name)
    return model_path, folder, tmp_path / "data"


def test_the_summary_and_the_bins_follow_the_state_without_a_window(qtbot, blood):
    """A RecordController built from its collaborators alone: the state's events drive the summary and the bins."""
    from PySide6.QtGui import QUndoStack
    from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    from desktop.ui.app_state import AppState
    from desktop.ui.bins import BinList
    from desktop.ui.export_controller import Exports
    from desktop.ui.feedback import Feedback
    from desktop.ui.operator import WhoIsWorking
    from desktop.ui.record_controller import RecordController
    from desktop.ui.settings import WindowSettings
    from desktop.ui.summary_panel import SummaryPanel

    model_path, folder, data = blood
    parent = QWidget()
    qtbot.addWidget(parent)
    feedback = Feedback(parent, QStatusBar(parent), QLabel(parent), QProgressBar(parent), QLabel(parent),
                        QPushButton(parent))
    from PySide6.QtCore import QSettings

    settings = WindowSettings(QSettings(str(data.parent / "s.ini"), QSettings.Format.IniFormat))
    state, summary, bins = AppState(), SummaryPanel(), BinList()
    who = WhoIsWorking(state, feedback, settings, QLabel(parent))
    exports = Exports(state, feedback, settings, who, summary, data, data.parent / "user-models")
    records = RecordController(state, feedback, who, exports, summary, bins, QUndoStack(), rescan=lambda: None)
    model = Model(model_path)
    info = model.info
    bins.fill(info, "")
    state.set_model(info)
    session = Session.open(folder, model, data)
    try:
        session.classify()
        state.open(session, folder, session.cells())
        assert "6 images" in summary.text.toPlainText()
        assert bins.item(0).text().endswith("(6)")
        cell = state.cells.cells[0]
        target = next(k for k in info.class_keys if k != cell.call)
        row = bins.row_of(target)
        count = lambda: int(bins.item(row).text().rsplit("(", 1)[1].rstrip(")"))
        before = count()
        session.reclassify([cell.file], target, "Ana")
        state.update_cells(session.cells([cell.file]), arriving=False)  # as the session's adapter delivers it
        assert count() == before + 1
        state.set_operator("Ana")
        state.close()
        assert "Open a folder" in summary.text.toPlainText() and records.session is None
    finally:
        session.close()


def test_a_folder_that_does_not_open_leaves_no_opening_title(qtbot, blood, monkeypatch):
    """The slide-scale question answered Cancel (open_session gives None): the title says no folder is open."""
    from conftest import open_window

    from desktop.ui import session_controller

    model_path, folder, data = blood
    window = open_window(qtbot, data.parent, model_path.parent)
    monkeypatch.setattr(session_controller, "open_session", lambda *a, **k: None)
    window.sessions.open_folder(folder, guess=False)
    assert window.windowTitle() == "SlideTally" and window.sessions.session is None
