"""The main window: the layout of assay, bins, gallery and summary, and the window's own events.
Its one state is `state` (AppState: the models, the open session and its cells, who is working);
what happens in it belongs to the controllers it builds, each given what it works with:
`sessions` (opening a folder's session and its classification), `review` (the gallery's review
actions), `records` (the specimen, sign-off, verification, reopen and the summary), `exports`
(CSV, PDF, HL7/FHIR and the LIS), `lab` (the lab tools), `who` (who is working) and `menu`
(menus, toolbar and the shortcut table). They talk through the state's signals, not the window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QSettings, QTimer
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QApplication, QMainWindow

from desktop.core.resources import user_data_dir, user_models_dir
from desktop.ui.settings import THUMB_SIZES, WindowSettings

if TYPE_CHECKING:  # imported when the window is completed, after its first paint (see MainWindow.complete)
    from desktop.core.records.domain import SessionRecord
    from desktop.ui.actions import Actions
    from desktop.ui.app_state import AppState
    from desktop.ui.early_keys import EarlyKeys
    from desktop.ui.export_controller import Exports
    from desktop.ui.feedback import Feedback
    from desktop.ui.lab_actions import LabActions
    from desktop.ui.operator import WhoIsWorking
    from desktop.ui.record_controller import RecordController
    from desktop.ui.review_actions import ReviewActions
    from desktop.ui.session_controller import SessionController


MIN_WIDTH, MIN_HEIGHT = 900, 560  # the smallest window restored: the three panes usable (see _clamp_to_screen)


class MainWindow(QMainWindow):
    """Built in two steps, so the window is on screen before the core loads: the frame (title, size, the
    status line) needs only Qt; `complete()` imports the core (NumPy, OpenCV, ONNX Runtime...) and builds the
    rest. The app calls complete() after the first paint; MainWindow(...) without complete_later does both.
    Keys pressed in between are held and replayed on the completed window (early_keys.py)."""

    def __init__(self, data_root: Path | None = None, settings: QSettings | None = None,
                 complete_later: bool = False, user_models: Path | None = None) -> None:
        super().__init__()
        self.data_root = data_root or user_data_dir()
        self.settings = WindowSettings(settings or QSettings("SlideTally", "SlideTally"))
        self.user_models = user_models or user_models_dir()  # where site models are installed
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
        from desktop.ui.app_state import AppState
        from desktop.ui.export_controller import Exports
        from desktop.ui.lab_actions import LabActions
        from desktop.ui.operator import WhoIsWorking
        from desktop.ui.record_controller import RecordController
        from desktop.ui.review_actions import ReviewActions
        from desktop.ui.session_controller import SessionController

        self.undo_stack = QUndoStack(self)
        self.state: AppState = AppState()
        panes = layout.build_panes(self, self.state)
        self.feedback: Feedback = layout.build_status(self)
        state, feedback, settings = self.state, self.feedback, self.settings
        self.who: WhoIsWorking = WhoIsWorking(state, feedback, settings, self.operator_label)
        self.sessions: SessionController = SessionController(state, panes, feedback, settings, self.data_root)
        self.exports: Exports = Exports(state, feedback, settings, self.who, panes.summary, self.data_root,
                                        self.user_models)
        self.records: RecordController = RecordController(state, feedback, self.who, self.exports, panes.summary,
                                                          panes.bins, self.undo_stack, self.sessions.rescan)
        self.review: ReviewActions = ReviewActions(state, panes, feedback, self.who, settings, self.undo_stack)
        self.lab: LabActions = LabActions(state, feedback, self.sessions, self.data_root, self.user_models)
        self.menu: Actions = Actions(self)
        self.cancel_button.clicked.connect(self.sessions.cancel)
        self.thumb_slider.valueChanged.connect(self._thumb_size_changed)
        self.names_box.toggled.connect(self._thumb_size_changed)
        state.model_changed.connect(self.gallery_model.set_info)
        state.record_changed.connect(self._show_title)
        state.session_changed.connect(self.rebuild_recent)
        self.records.refresh()
        self._restore_layout()
        self.completed = True

    # --- layout ----------------------------------------------------------------------------
    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ActivationChange and self.isActiveWindow() and getattr(self, "completed", False):
            self.sessions.catch_up()  # another process may have written to the open session
        super().changeEvent(event)

    def _show_title(self, record: SessionRecord | None) -> None:
        """The title bar, from the open session's own record."""
        from desktop.core.records.domain import SessionState

        if record is None:
            self.setWindowTitle("SlideTally")
            return
        folder = self.state.folder.name if self.state.folder else ""
        status = "signed off" if record.signed else ("reopened" if record.state == SessionState.REOPENED else "")
        self.setWindowTitle(" — ".join(p for p in ("SlideTally", record.specimen_id or folder, folder, status) if p))

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

    def _thumb_size_changed(self, *_) -> None:
        size, names = THUMB_SIZES[self.thumb_slider.value()], self.names_box.isChecked()
        self.thumbnails.set_size(size)
        self.gallery_model.show_names = names
        self.gallery.set_thumb_size(size, names)
        self.gallery_model.layoutChanged.emit()
        self.settings.thumb_size, self.settings.file_names = size, names

    def rebuild_recent(self, *_) -> None:
        self.menu.rebuild_recent(self.settings.recent, self.sessions.open_folder)

    # --- help and messages -------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        from desktop.ui.actions import shortcuts_html
        from desktop.ui.dialogs import show_text

        show_text(self, "Keyboard shortcuts", shortcuts_html())

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
