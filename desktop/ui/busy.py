"""Slow work the technician waits for (opening a large folder's session, the folder check at
sign-off, reading every session for Verification) runs on a helper thread while the window keeps
painting and answering; a busy dialog appears only when it takes longer than a moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QEventLoop, Qt
from PySide6.QtWidgets import QApplication, QProgressDialog, QWidget

T = TypeVar("T")
SHOW_AFTER_S = 0.4  # a dialog that flashes for less than this is noise
TICK_MS = 30  # the longest the GUI thread waits before it paints and answers again


def run_busy(parent: QWidget | None, text: str, work: Callable[[], T]) -> T:
    """`work()` on a helper thread; the GUI thread keeps processing events (input is held by a
    modal busy dialog once shown). Returns its result, or raises its exception here."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread as it was
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="slidetally-busy", daemon=True)
    started = time.monotonic()
    thread.start()
    dialog: QProgressDialog | None = None
    app = QApplication.instance()
    while thread.is_alive():
        thread.join(TICK_MS / 1000)
        if dialog is None and thread.is_alive() and time.monotonic() - started > SHOW_AFTER_S:
            dialog = QProgressDialog(text, "", 0, 0, parent)
            dialog.setCancelButton(None)
            dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
            dialog.setWindowTitle("SlideTally")
            dialog.show()
        if app is not None:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, TICK_MS)
    if dialog is not None:
        dialog.close()
        dialog.deleteLater()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
