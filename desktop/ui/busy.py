"""Slow work the technician waits for (opening a large folder's session, the folder check at
sign-off, reading every session for Verification) runs on a helper thread while the window keeps
painting and answering; a busy dialog appears only when it takes longer than a moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication, QProgressDialog, QWidget

T = TypeVar("T")
SHOW_AFTER_S = 0.4  # a dialog that flashes for less than this is noise
TICK_MS = 10  # how often the GUI thread looks whether the work is done


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
    if QApplication.instance() is None:  # no window to keep answering
        thread.join()
        return _result(outcome)
    dialog: QProgressDialog | None = None
    # The GUI thread waits inside Qt's event loop, not in a join: timers, paints and input are
    # served as they come (a join of TICK_MS between event passes left gaps of 50-70 ms).
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(TICK_MS)

    def check() -> None:
        nonlocal dialog
        if not thread.is_alive():
            loop.quit()
        elif dialog is None and time.monotonic() - started > SHOW_AFTER_S:
            dialog = QProgressDialog(text, "", 0, 0, parent)
            dialog.setCancelButton(None)
            dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
            dialog.setWindowTitle("SlideTally")
            dialog.show()

    poll.timeout.connect(check)
    poll.start()
    while thread.is_alive():
        loop.exec()  # left by check() once the work is done
        if thread.is_alive():  # left because the application is quitting: Qt's loops now return at once
            thread.join(TICK_MS / 1000)
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, TICK_MS)
    poll.stop()
    if dialog is not None:
        dialog.close()
        dialog.deleteLater()
    return _result(outcome)


def _result(outcome: dict[str, object]) -> object:
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]
