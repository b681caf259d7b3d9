"""Undoable technician actions (QUndoStack). The action is carried out by the session before
the command is pushed, so a refused action never enters the undo stack."""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from desktop.core.records.session import Previous, Session


class SessionCommand(QUndoCommand):
    """An action already done on the session; undo restores the cells, redo does it again."""

    def __init__(self, session: Session, text: str, redo_action, previous: list[Previous], operator: str) -> None:
        super().__init__(text)
        self.session, self.redo_action, self.previous, self.operator = session, redo_action, previous, operator
        self._done = True  # QUndoStack.push() calls redo(): the first time it is already done

    def redo(self) -> None:
        if self._done:
            self._done = False
            return
        self.previous = self.redo_action()

    def undo(self) -> None:
        self.session.restore(self.previous, self.operator, "undo")


def reclassify(session: Session, files: list[str], new_class: str, label: str, operator: str) -> SessionCommand | None:
    """Reclassify now (raises if refused); the command to push, or None when nothing changed."""
    previous = session.reclassify(files, new_class, operator)
    if not previous:
        return None
    return SessionCommand(session, f"Reclassify {len(previous)} as {label}",
                          lambda: session.reclassify(files, new_class, operator), previous, operator)


def confirm(session: Session, files: list[str], operator: str) -> SessionCommand | None:
    previous = session.confirm(files, operator)
    if not previous:
        return None
    return SessionCommand(session, f"Confirm {len(previous)} call(s)", lambda: session.confirm(files, operator),
                          previous, operator)
