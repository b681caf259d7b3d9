"""The window's one state: the models found, the model in use, the open folder's session and its cells, who is
working, and whether a classification runs. Controllers change it through its methods; they and the views
subscribe to its signals instead of calling each other through the window (napari's layer list and events)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from desktop.core.inference.model_info import ModelInfo
from desktop.core.records.cell_list import CellList, SortedCells
from desktop.core.records.domain import Cell, SessionRecord

if TYPE_CHECKING:
    from desktop.core.records.session import Session

ALTERED_TITLE = "Record altered"
ALTERED_TEXT = ("This record was altered outside SlideTally. It is read-only; ask the lab to check it "
                "(slidetally-cli audit-check).")
SIGNED_TITLE = "Session signed off"
SIGNED_TEXT = "This session is signed off and read-only. Use Review → Reopen (with a reason) to make changes."


class AppState(QObject):
    """Signals, each after the change it names:
    - `models_changed()`: the list of models was (re)loaded;
    - `model_changed(info)`: the model in use (ModelInfo or None);
    - `session_changed(session)`: a session was opened, closed (None) or read anew; `cells` holds all its cells;
    - `cells_changed(arriving)`: cells were added or changed (arriving: by the classifier, not by a review);
    - `record_changed(record)`: the open session's record (SessionRecord, or None when none is open);
    - `operator_changed(name)`: who is working;
    - `classifying_changed(running)`: a classification started or ended."""

    models_changed = Signal()
    model_changed = Signal(object)
    session_changed = Signal(object)
    cells_changed = Signal(bool)
    record_changed = Signal(object)
    operator_changed = Signal(str)
    classifying_changed = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self.models: list[ModelInfo] = []
        self.info: ModelInfo | None = None
        self.session: Session | None = None
        self.folder: Path | None = None
        self.cells = CellList()  # the open session's cells, least confident first: the gallery shows this list
        self.operator: str | None = None  # asked once per app start (desktop/ui/operator.py)
        self.classifying = False

    # --- models ------------------------------------------------------------------------------
    def set_models(self, models: list[ModelInfo]) -> None:
        self.models = models
        self.models_changed.emit()

    def set_model(self, info: ModelInfo | None) -> None:
        self.info = info
        self.model_changed.emit(info)

    # --- the open session --------------------------------------------------------------------
    def open(self, session: Session, folder: Path, cells: list[Cell] | SortedCells) -> None:
        self.session, self.folder = session, folder
        self.cells.replace(cells)
        self.session_changed.emit(session)
        self.record_changed.emit(session.record())

    def reload(self) -> None:
        """The open session read anew (another process wrote to it)."""
        if self.session is not None:
            self.cells.replace(self.session.cells())
            self.session_changed.emit(self.session)
            self.record_changed.emit(self.session.record())

    def close(self) -> None:
        """No session open: the gallery and the summary empty (said once: closing what is closed says nothing)."""
        if self.session is None and self.folder is None and not len(self.cells):
            return
        self.session = self.folder = None
        self.cells.replace([])
        self.session_changed.emit(None)
        self.record_changed.emit(None)

    def update_cells(self, cells: list[Cell], arriving: bool) -> None:
        self.cells.upsert(cells)
        self.cells_changed.emit(arriving)

    def record_stored(self, record: SessionRecord) -> None:
        """The session's record changed (signed off, verified, reopened, identity set)."""
        self.record_changed.emit(record)

    def record(self) -> SessionRecord | None:
        return self.session.record() if self.session is not None else None

    @property
    def altered(self) -> bool:
        return self.session is not None and bool(self.session.altered)

    def why_read_only(self) -> tuple[str, str] | None:
        """(title, message) when the open session takes no change: altered outside SlideTally, or signed off."""
        if self.session is None:
            return None
        if self.session.altered:
            return ALTERED_TITLE, ALTERED_TEXT
        if self.session.signed:
            return SIGNED_TITLE, SIGNED_TEXT
        return None

    # --- who is working, and the classifier ------------------------------------------------------------
    def set_operator(self, name: str) -> None:
        self.operator = name
        self.operator_changed.emit(name)

    def set_classifying(self, running: bool) -> None:
        self.classifying = running
        self.classifying_changed.emit(running)
