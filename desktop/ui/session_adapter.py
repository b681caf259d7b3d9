"""The Qt face of a core Session: its plain-Python events become Qt signals, delivered on
the GUI thread (queued) whichever thread the session emitted them from."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from desktop.core.records.session import Session


class SessionAdapter(QObject):
    cells_added = Signal(object)  # list[Cell]
    cells_changed = Signal(object)  # list[Cell]
    state_changed = Signal(object)  # SessionRecord
    progress = Signal(object)  # Progress
    notice = Signal(str)

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._links = [(session.events.cells_added, self.cells_added.emit),
                       (session.events.cells_changed, self.cells_changed.emit),
                       (session.events.state, self.state_changed.emit),
                       (session.events.progress, self.progress.emit),
                       (session.events.notice, self.notice.emit)]
        for event, emit in self._links:
            event.connect(emit)

    def detach(self) -> None:
        """Stop following the session; signals already queued are ignored by their receivers."""
        for event, emit in self._links:
            event.disconnect(emit)
