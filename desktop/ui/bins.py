"""The class list beside the gallery: one bin per class plus All, Review, Unreadable and Missing,
with counts; cells dropped on a class are reclassified to it."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from desktop.core.inference.model_info import ModelInfo
from desktop.core.records.review import ALL, MISSING, REVIEW, UNREADABLE
from desktop.ui.gallery import MIME_IDS

KEY, LABEL = Qt.ItemDataRole.UserRole, Qt.ItemDataRole.UserRole + 1


class BinList(QListWidget):
    dropped = Signal(object, str)  # the ids of the cells dropped (list[int]), the bin's key

    def __init__(self) -> None:
        super().__init__()
        self._counts: tuple[dict[str, int], int] = ({}, 0)  # the last counts shown: kept when the bins are refilled
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long names are elided instead
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        event.acceptProposedAction() if event.mimeData().hasFormat(MIME_IDS) else event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        item = self.itemAt(event.position().toPoint())
        key = str(item.data(KEY)) if item is not None else "__"
        ok = event.mimeData().hasFormat(MIME_IDS) and not key.startswith("__")
        event.acceptProposedAction() if ok else event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        item = self.itemAt(event.position().toPoint())
        if item is None:
            return
        ids = json.loads(bytes(event.mimeData().data(MIME_IDS)).decode())
        self.dropped.emit(ids, str(item.data(KEY)))
        event.acceptProposedAction()

    def fill(self, info: ModelInfo | None, wanted: str) -> None:
        """All images, the model's classes with their hotkeys, Review, Unreadable, Missing; `wanted` selected."""
        self.clear()
        entries = [("All images", ALL)]
        if info is not None:
            entries += [(f"[{c.hotkey}] {c.label}", c.key) for c in info.classes]
            entries += [("Review", REVIEW), ("Unreadable", UNREADABLE), ("Missing from folder", MISSING)]
        for text, key in entries:
            item = QListWidgetItem(text)
            item.setData(KEY, key)
            item.setData(LABEL, text)
            self.addItem(item)
        self.setCurrentRow(max(0, self.row_of(wanted)))
        self.show_counts(*self._counts)

    def row_of(self, key: str) -> int:
        return next((r for r in range(self.count()) if self.item(r).data(KEY) == key), -1)

    def show_counts(self, tally: dict[str, int], total: int) -> None:
        self._counts = (tally, total)
        for row in range(self.count()):
            item = self.item(row)
            key = item.data(KEY)
            n = total if key == ALL else tally.get(key, 0)
            item.setText(f"{item.data(LABEL)}  ({n})")
            item.setHidden(key == MISSING and n == 0)

    def current_key(self) -> str | None:
        item = self.currentItem()
        return None if item is None else item.data(KEY)
