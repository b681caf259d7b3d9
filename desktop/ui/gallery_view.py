"""The gallery view: thumbnails in a grid, zoomable (slider or Ctrl+wheel), where the
focused cell is always the selected one, so that the keys act on what the technician sees."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QListView

from desktop.ui.settings import THUMB, THUMB_SIZES


class GalleryView(QListView):
    zoom_requested = Signal(int)  # +1 / -1 steps (Ctrl+wheel)

    def __init__(self) -> None:
        super().__init__()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setMovement(QListView.Movement.Static)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.set_thumb_size(THUMB, names=False)

    def set_thumb_size(self, size: int, names: bool) -> None:
        self.setIconSize(QSize(size, size))
        lines = 3 if names else 2
        self.setGridSize(QSize(max(size + 40, 136), size + 16 * lines + 8))

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_requested.emit(1 if event.angleDelta().y() > 0 else -1)
            event.accept()
            return
        super().wheelEvent(event)

    def focusInEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().focusInEvent(event)
        self.select_current_if_none()

    def currentChanged(self, current, previous) -> None:  # noqa: N802 - Qt API
        super().currentChanged(current, previous)
        self.select_current_if_none()

    def select_current_if_none(self) -> None:
        """After Tab or an action the focused cell is selected too: Enter and the number keys act on it."""
        current = self.currentIndex()
        if current.isValid() and self.selectionModel() is not None and not self.selectionModel().hasSelection():
            self.selectionModel().select(current, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def select_row(self, row: int) -> None:
        model = self.model()
        if model is None or model.rowCount() == 0:
            return
        index = model.index(max(0, min(row, model.rowCount() - 1)), 0)
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollTo(index)

    def selected_rows(self) -> list[int]:
        return sorted(i.row() for i in self.selectionModel().selectedIndexes()) if self.selectionModel() else []


def zoom_step(size: int, step: int) -> int:
    """The next thumbnail size up or down the ladder."""
    sizes = list(THUMB_SIZES)
    at = min(range(len(sizes)), key=lambda i: abs(sizes[i] - size))
    return sizes[max(0, min(len(sizes) - 1, at + step))]


class FindBox(QLineEdit):
    """The find-by-name box: Esc (and Enter) leave it for the gallery, where the keys act on cells;
    the filter stays as typed."""

    leave = Signal()

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape:
            event.accept()  # Esc is the box's own, before the window's Cancel shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.leave.emit()
            return
        super().keyPressEvent(event)
