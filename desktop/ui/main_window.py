"""The main window: the layout of assay, bins, gallery and summary, and the window's own events.
What happens in it belongs to the controllers it owns: `sessions` (the open session and its
classification), `review` (the gallery's review actions), `records` (sign-off, exports, LIS) and
`menu` (menus, toolbar and the shortcut table)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QSettings, QTimer
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox

from desktop.core.resources import user_data_dir, user_models_dir
from desktop.ui.settings import THUMB_SIZES, WindowSettings

if TYPE_CHECKING:  # imported when the window is completed, after its first paint (see MainWindow.complete)
    from desktop.ui.actions import Actions
    from desktop.ui.early_keys import EarlyKeys
    from desktop.ui.record_controller import RecordController
    from desktop.ui.review_actions import ReviewActions
    from desktop.ui.session_controller import SessionController


log = logging.getLogger(__name__)
MIN_WIDTH, MIN_HEIGHT = 900, 560  # the smallest window restored: the three panes usable (see _clamp_to_screen)


class MainWindow(QMainWindow):
    """Built in two steps, so the window is on screen before the core loads: the frame (title, size, the
    status line) needs only Qt; `complete()` imports the core (NumPy, OpenCV, ONNX Runtime...) and builds the
    rest. The app calls complete() after the first paint; MainWindow(...) without complete_later does both.
    Keys pressed in between are held and replayed on the completed window (early_keys.py)."""

    def __init__(self, data_root: Path | None = None, settings: QSettings | None = None,
                 complete_later: bool = False) -> None:
        super().__init__()
        self.data_root = data_root or user_data_dir()
        self.settings = WindowSettings(settings or QSettings("SlideTally", "SlideTally"))
        self.user_models = user_models_dir()  # where site models are installed
        self.setWindowTitle("SlideTally")
        self.setAcceptDrops(True)
        self._restore_geometry()
        self.statusBar().showMessage("Starting…")
        self.completed = False
        self._painted: list = []  # callbacks waiting for the first paint (when_painted)
        self.early_keys: EarlyKeys | None = None  # keys typed before complete(): held, then replayed
        if complete_later:
            self.when_painted(self._hold_early_keys)  # first in line: before the app's complete()
        else:
            self.complete()

    def _hold_early_keys(self) -> None:
        """From the first paint on (the window cannot be typed into before it is on screen). Not earlier: the key
        filter's Qt event types cost the first paint 30 ms to load."""
        from desktop.ui import early_keys

        if not self.completed:
            self.early_keys = early_keys.EarlyKeys(self)

    def replay_early_keys(self) -> None:
        """The keys pressed while the window was completing, now that it is (and its models are loaded)."""
        if self.early_keys is not None:
            self.early_keys.replay()
            self.early_keys = None

    def when_painted(self, callback) -> None:
        """Run callback once the window has been painted (at once if it has): the app completes the window then."""
        if self._painted is None:
            QTimer.singleShot(0, callback)
        else:
            self._painted.append(callback)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().paintEvent(event)
        if self._painted:  # after this paint reaches the screen, not inside it
            for callback in self._painted:
                QTimer.singleShot(0, callback)
        self._painted = None

    def complete(self) -> None:
        from desktop.ui import layout
        from desktop.ui.actions import Actions
        from desktop.ui.record_controller import RecordController
        from desktop.ui.review_actions import ReviewActions
        from desktop.ui.session_controller import SessionController

        self.undo_stack = QUndoStack(self)
        self.sessions: SessionController = SessionController(self)
        self.review: ReviewActions = ReviewActions(self)
        self.records: RecordController = RecordController(self)
        layout.build_panes(self)
        self.menu: Actions = Actions(self)
        layout.build_status(self)
        self.records.show_operator()
        self._restore_layout()
        self.completed = True

    # --- layout ----------------------------------------------------------------------------
    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow() and getattr(self, "completed", False):
            self.sessions.catch_up()  # another process may have written to the open session
        super().changeEvent(event)

    def show_banner(self, text: str, alarm: bool = False) -> None:
        """The banner above the gallery: yellow for a notice, red for a record that must not be trusted."""
        from desktop.ui.layout import ALARM_STYLE, BANNER_STYLE

        self.banner.setStyleSheet(ALARM_STYLE if alarm else BANNER_STYLE)
        self.banner.setText(text)
        self.banner.setVisible(True)

    def show_progress(self, running: bool) -> None:
        """The progress bar and Cancel while classifying (busy until the first count arrives)."""
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.menu.cancel.setEnabled(running)
        if running:
            self.progress.setRange(0, 0)
        else:
            self.rate.clear()

    def show_rate(self, p) -> None:
        self.progress.setRange(0, p.total)
        self.progress.setValue(p.done)
        eta_text = f", {p.eta_s:.0f} s left" if p.eta_s != float("inf") else ""
        self.rate.setText(f"{p.done}/{p.total} · {p.images_per_s:.0f} images/s{eta_text}")

    # --- settings ----------------------------------------------------------------------------
    def _restore_geometry(self) -> None:
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)
        else:
            self.resize(1400, 860)
        self._clamp_to_screen()

    def _restore_layout(self) -> None:
        s = self.settings
        if s.splitter is not None:
            self.splitter.restoreState(s.splitter)
        else:  # first start: shares of the window, so a small screen keeps a readable summary
            width = max(self.width(), 600)
            self.splitter.setSizes([int(0.16 * width), int(0.52 * width), int(0.32 * width)])
        self.thumb_slider.setValue(THUMB_SIZES.index(s.thumb_size))
        self.names_box.setChecked(s.file_names)
        self._thumb_size_changed()
        self.rebuild_recent()

    def _clamp_to_screen(self) -> None:
        """A geometry saved on a larger screen (or at another scale) is fitted to this one; one saved tiny (on a
        small virtual screen, or shrunk by accident) opens at least 900x560 where the screen has the room."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        width = min(max(self.width(), MIN_WIDTH), available.width())
        height = min(max(self.height(), MIN_HEIGHT), available.height() - 30)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        frame = self.frameGeometry()
        if not available.contains(frame):
            self.move(max(available.left(), min(frame.left(), available.right() - frame.width())),
                      max(available.top(), min(frame.top(), available.bottom() - frame.height())))

    def _save_settings(self) -> None:
        self.settings.geometry = self.saveGeometry()
        self.settings.splitter = self.splitter.saveState()
        if self.bins.current_key() is not None:
            self.settings.bin = self.bins.current_key()

    def _target_changed(self, value: int) -> None:
        self.records.set_target(value)

    def _thumb_size_changed(self, *_) -> None:
        size, names = THUMB_SIZES[self.thumb_slider.value()], self.names_box.isChecked()
        self.thumbnails.set_size(size)
        self.gallery_model.show_names = names
        self.gallery.set_thumb_size(size, names)
        self.gallery_model.layoutChanged.emit()
        self.settings.thumb_size, self.settings.file_names = size, names

    def rebuild_recent(self) -> None:
        self.menu.rebuild_recent(self.settings.recent, self.sessions.open_folder)

    # --- help and messages -------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        from desktop.ui.actions import shortcuts_html
        from desktop.ui.dialogs import show_text

        show_text(self, "Keyboard shortcuts", shortcuts_html())

    def ask(self, title: str, question: str) -> bool:
        """A yes/no question whose safe answer, No, is the default (Enter does not say yes by accident)."""
        answer = QMessageBox.question(self, title, question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def error(self, title: str, message: str) -> None:
        message = message[:1].upper() + message[1:]  # every sentence the technician reads starts as one
        log.warning("%s: %s", title, message)
        if self.isVisible():
            QMessageBox.warning(self, title, message)
        else:
            self.statusBar().showMessage(f"{title}: {message}")

    # --- window events --------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        from desktop.core.inference.wsi import is_slide_name

        urls = event.mimeData().urls()
        if urls and self.completed and (Path(urls[0].toLocalFile()).is_dir() or is_slide_name(Path(urls[0].toLocalFile()))):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls and self.completed:
            self.sessions.open_folder(Path(urls[0].toLocalFile()))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if not self.completed:  # closed while starting: nothing is open yet
            super().closeEvent(event)
            return
        self._save_settings()
        self.sessions.shutdown()  # cancels and waits for the classifier: every stored call stays
        self.thumbnails.wait()
        super().closeEvent(event)
