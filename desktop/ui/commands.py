"""Undoable technician actions (QUndoStack): each one is written to the store at once."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QUndoCommand

from desktop.core.store import SessionStore


class ReclassifyCommand(QUndoCommand):
    def __init__(self, store: SessionStore, ids: list[int], new_class: str, who: str, label: str,
                 refresh: Callable[[list[int]], None]):
        super().__init__(f"Reclassify {len(ids)} as {label}")
        self.store, self.ids, self.new_class, self.who, self.refresh = store, ids, new_class, who, refresh
        self.previous: list = []

    def redo(self) -> None:
        self.previous = self.store.reclassify(self.ids, self.new_class, self.who)
        self.refresh(self.ids)

    def undo(self) -> None:
        self.store.restore(self.previous, self.who, "undo")
        self.refresh(self.ids)


class ConfirmCommand(QUndoCommand):
    def __init__(self, store: SessionStore, ids: list[int], who: str, refresh: Callable[[list[int]], None]):
        super().__init__(f"Confirm {len(ids)} AI call(s)")
        self.store, self.ids, self.who, self.refresh = store, ids, who, refresh
        self.previous: list = []

    def redo(self) -> None:
        self.previous = self.store.confirm(self.ids, self.who)
        self.refresh(self.ids)

    def undo(self) -> None:
        self.store.restore(self.previous, self.who, "undo")
        self.refresh(self.ids)
