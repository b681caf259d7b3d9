"""What an open session announces (napari-style plain-Python events; the Qt adapter turns them into signals)."""

from __future__ import annotations

from desktop.core.events import Event


class SessionEvents:
    """What a session announces. Callbacks run in the thread that made the change."""

    def __init__(self) -> None:
        self.cells_added = Event("cells_added")  # list[Cell]
        self.cells_changed = Event("cells_changed")  # list[Cell]
        self.state = Event("state")  # SessionRecord
        self.progress = Event("progress")  # Progress
        self.notice = Event("notice")  # str: something the technician must know (folder changes, empty folder)

    def disconnect_all(self) -> None:
        for event in (self.cells_added, self.cells_changed, self.state, self.progress, self.notice):
            event.disconnect()
