"""What the window tells the technician and asks them: the status line, the banner above the gallery, the
progress of a classification, warnings and yes/no questions. Controllers are given this, not the window."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from PySide6.QtWidgets import QLabel, QMessageBox, QProgressBar, QPushButton, QStatusBar, QWidget

from desktop.ui.busy import run_busy

log = logging.getLogger(__name__)
T = TypeVar("T")

BANNER_STYLE = "background:#fef3c7; color:#78350f; padding:6px; border:1px solid #f59e0b;"
ALARM_STYLE = "background:#fee2e2; color:#7f1d1d; padding:6px; border:2px solid #dc2626; font-weight:bold;"


class Feedback:
    """`parent` is the window: dialogs open over it."""

    def __init__(self, parent: QWidget, status_bar: QStatusBar, banner: QLabel, progress: QProgressBar, rate: QLabel,
                 cancel_button: QPushButton) -> None:
        self.parent, self._status_bar, self._banner = parent, status_bar, banner
        self._progress, self._rate, self._cancel_button = progress, rate, cancel_button

    def status(self, text: str, ms: int = 0) -> None:
        self._status_bar.showMessage(text, ms)

    def banner(self, text: str, alarm: bool = False) -> None:
        """Yellow for a notice, red for a record that must not be trusted."""
        self._banner.setStyleSheet(ALARM_STYLE if alarm else BANNER_STYLE)
        self._banner.setText(text)
        self._banner.setVisible(True)

    def hide_banner(self) -> None:
        self._banner.setVisible(False)

    def progress(self, running: bool) -> None:
        """The progress bar and Cancel while classifying (busy until the first count arrives)."""
        self._progress.setVisible(running)
        self._cancel_button.setVisible(running)
        if running:
            self._progress.setRange(0, 0)
        else:
            self._rate.clear()

    def rate(self, p) -> None:
        """The classifier's Progress: done of total, images per second and the time left."""
        self._progress.setRange(0, p.total)
        self._progress.setValue(p.done)
        eta_text = f", {p.eta_s:.0f} s left" if p.eta_s != float("inf") else ""
        self._rate.setText(f"{p.done}/{p.total} · {p.images_per_s:.0f} images/s{eta_text}")

    def progress_started(self) -> bool:
        """Whether the bar counts yet (it is busy until the first Progress)."""
        return bool(self._progress.maximum())

    def ask(self, title: str, question: str) -> bool:
        """A yes/no question whose safe answer, No, is the default (Enter does not say yes by accident)."""
        buttons = QMessageBox.StandardButton
        return QMessageBox.question(self.parent, title, question, buttons.Yes | buttons.No, buttons.No) == buttons.Yes

    def error(self, title: str, message: str) -> None:
        message = message[:1].upper() + message[1:]  # every sentence the technician reads starts as one
        log.warning("%s: %s", title, message)
        if self.parent.isVisible():
            QMessageBox.warning(self.parent, title, message)
        else:
            self.status(f"{title}: {message}")

    def busy(self, text: str, work: Callable[[], T]) -> T:
        """Slow work off the GUI thread, a busy dialog over the window if it takes long (busy.py)."""
        return run_busy(self.parent, text, work)
