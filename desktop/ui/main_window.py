"""The main window: assay, folder, gallery by class, summary, review, sign-off, export."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QThread
from PySide6.QtGui import QAction, QKeySequence, QShortcut, QUndoStack
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QInputDialog,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop import __version__
from desktop.core.export import ExportError, export_audit_csv, export_csv
from desktop.core.folder import FolderError, guess_task
from desktop.core.model import Model, ModelError, ModelInfo, discover_models
from desktop.core.record import SessionRecord
from desktop.core.resources import resource, user_data_dir, user_models_dir
from desktop.core.review import ALL, MISSING, REVIEW, UNREADABLE, ranked_classes
from desktop.core.session import Session, SessionLocked, SignOffRefused, StoreError
from desktop.ui import commands
from desktop.ui.audit_view import AuditDialog
from desktop.ui.dialogs import IdentityForm
from desktop.ui.gallery import MIME_IDS, THUMB, BinFilter, CellRole, GalleryModel, ThumbnailCache
from desktop.ui.preview import PreviewDialog
from desktop.ui.session_adapter import SessionAdapter
from desktop.ui.summary_panel import SummaryPanel
from desktop.ui.worker import ClassifyWorker, start_worker

log = logging.getLogger(__name__)
SHORTCUTS = [
    ("Ctrl+O", "Open a folder of images"),
    ("1 … 8", "Reclassify the selected cells (keys shown beside each class)"),
    ("Enter", "Confirm the AI call of the selected cells"),
    ("Space / double-click", "Large view with all class probabilities"),
    ("Ctrl+A", "Select all cells in the current bin"),
    ("Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)", "Undo / redo"),
    ("Ctrl+E", "Export CSV (per image and summary)"),
    ("Ctrl+P", "Printable PDF report"),
    ("Ctrl+Shift+S", "Sign off"),
    ("Ctrl+I", "Specimen and patient ID"),
    ("Ctrl+Shift+A", "Audit trail"),
    ("Esc", "Cancel classification"),
    ("F1", "This list"),
]


class BinList(QListWidget):
    """The class list with counts; cells dropped on a class are reclassified to it."""

    def __init__(self, on_drop):
        super().__init__()
        self.on_drop = on_drop
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)

    def dragEnterEvent(self, event):  # noqa: N802 - Qt API
        event.acceptProposedAction() if event.mimeData().hasFormat(MIME_IDS) else event.ignore()

    def dragMoveEvent(self, event):  # noqa: N802 - Qt API
        item = self.itemAt(event.position().toPoint())
        key = str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else "__"
        ok = event.mimeData().hasFormat(MIME_IDS) and not key.startswith("__")
        event.acceptProposedAction() if ok else event.ignore()

    def dropEvent(self, event):  # noqa: N802 - Qt API
        item = self.itemAt(event.position().toPoint())
        if item is None:
            return
        ids = json.loads(bytes(event.mimeData().data(MIME_IDS)).decode())
        self.on_drop(ids, item.data(Qt.ItemDataRole.UserRole))
        event.acceptProposedAction()


class MainWindow(QMainWindow):
    def __init__(self, data_root: Path | None = None, settings: QSettings | None = None):
        super().__init__()
        self.data_root = data_root or user_data_dir()
        self.settings = settings or QSettings("SlideTally", "SlideTally")
        self.models: list[ModelInfo] = []
        self.info: ModelInfo | None = None
        self.folder: Path | None = None
        self.session: Session | None = None
        self.adapter: SessionAdapter | None = None
        self.worker: ClassifyWorker | None = None
        self.thread: QThread | None = None
        self._loaded: dict[Path, Model] = {}  # ONNX Runtime sessions, loaded once per model file
        self._operator: str | None = None  # asked once per app start
        self._model_folders: tuple[Path, ...] = ()
        self.user_models = user_models_dir()  # where site models are installed
        self.undo_stack = QUndoStack(self)
        self.setWindowTitle("SlideTally")
        self.setAcceptDrops(True)
        self._build()
        self._restore_settings()
        self._summary_at = 0.0

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.assay = QComboBox()
        self.assay.setMinimumWidth(360)
        self.assay.setToolTip("The assay: one per model found")
        self.assay.currentIndexChanged.connect(self._assay_changed)
        self.thumbnails = ThumbnailCache()
        self.gallery_model = GalleryModel(self.thumbnails)
        self.proxy = BinFilter()
        self.proxy.setSourceModel(self.gallery_model)
        self.gallery = QListView()
        self.gallery.setModel(self.proxy)
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setGridSize(QSize(THUMB + 40, THUMB + 40))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setUniformItemSizes(True)
        self.gallery.setWordWrap(True)
        self.gallery.setLayoutMode(QListView.LayoutMode.Batched)
        self.gallery.setBatchSize(200)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.gallery.setDragEnabled(True)
        self.gallery.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.gallery.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.gallery.customContextMenuRequested.connect(self._context_menu)
        self.gallery.doubleClicked.connect(lambda _: self.preview())
        self.bins = BinList(self._dropped_on_bin)
        self.bins.setMaximumWidth(260)
        self.bins.currentItemChanged.connect(self._bin_changed)
        self.summary = SummaryPanel()
        self.summary.setMinimumWidth(340)
        self.summary.target_changed.connect(lambda v: (self.settings.setValue("target", v), self.refresh_summary()))
        splitter = QSplitter()
        splitter.addWidget(self.bins)
        splitter.addWidget(self.gallery)
        splitter.addWidget(self.summary)
        splitter.setStretchFactor(1, 3)
        splitter.setStretchFactor(2, 1)
        splitter.setSizes([220, 760, 380])
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background:#fef3c7; color:#78350f; padding:6px; border:1px solid #f59e0b;")
        self.banner.setVisible(False)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self.empty_hint = QLabel("Open a folder of images (Ctrl+O), or drop one on this window.")
        self._build_actions()
        self._build_status()

    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip or text)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open folder…", self.choose_folder, QKeySequence.StandardKey.Open,
                                        "Open a folder (Ctrl+O)")
        self.export_action = self._action("&Export CSV…", self.export_csv, "Ctrl+E")
        self.report_action = self._action("&PDF report…", self.export_pdf, "Ctrl+P")
        self.signoff_action = self._action("&Sign off…", self.sign_off, "Ctrl+Shift+S")
        self.reopen_action = self._action("&Reopen signed-off session…", self.reopen)
        self.verify_action = self._action("&Verify (second person)…", self.verify)
        self.identity_action = self._action("Specimen and &patient ID…", self.edit_identity, "Ctrl+I")
        self.audit_action = self._action("&Audit trail…", self.show_audit, "Ctrl+Shift+A")
        self.confirm_action = self._action("&Confirm AI call", self.confirm_selected, Qt.Key.Key_Return)
        self.preview_action = self._action("&Large view", self.preview, Qt.Key.Key_Space)
        self.cancel_action = self._action("Cancel", self.cancel, Qt.Key.Key_Escape, "Stop classifying; what is done is kept")
        self.cancel_action.setEnabled(False)
        self.undo_action = self._action("&Undo", self.undo, QKeySequence("Ctrl+Z"))
        self.redo_action = self._action("&Redo", self.redo)
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        self.undo_stack.canUndoChanged.connect(self.undo_action.setEnabled)
        self.undo_stack.canRedoChanged.connect(self.redo_action.setEnabled)
        for a in (self.confirm_action, self.preview_action):
            a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.gallery.addAction(a)
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        file_menu.addActions([self.export_action, self.report_action])
        file_menu.addSeparator()
        file_menu.addAction(self._action("&Quit", self.close, QKeySequence.StandardKey.Quit))
        edit = self.menuBar().addMenu("&Edit")
        edit.addActions([self.undo_action, self.redo_action])
        edit.addSeparator()
        edit.addActions([self.confirm_action, self.preview_action])
        review = self.menuBar().addMenu("&Review")
        review.addActions([self.identity_action, self.signoff_action, self.verify_action, self.reopen_action])
        review.addSeparator()
        review.addAction(self.audit_action)
        tools = self.menuBar().addMenu("&Tools")
        tools.addAction(self._action("&Verification…", self.show_verification, tip="This model's calls against this "
                                     "lab's signed-off final calls"))
        tools.addAction(self._action("&Adapt to this lab…", self.show_adapt, tip="Fit a site model on this lab's "
                                     "verified cells (lab director)"))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("&Keyboard shortcuts", self.show_shortcuts, "F1"))
        help_menu.addAction(self._action("&Model card…", self.show_model_card))
        help_menu.addAction(self._action("&About SlideTally", self.show_about))
        bar = self.addToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        bar.addWidget(QLabel(" Assay: "))
        bar.addWidget(self.assay)
        bar.addAction(self.open_action)
        bar.addSeparator()
        bar.addActions([self.undo_action, self.redo_action])
        bar.addSeparator()
        bar.addActions([self.export_action, self.report_action, self.signoff_action])
        self.hotkeys: list[QShortcut] = []

    def _build_status(self) -> None:
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(280)
        self.progress.setVisible(False)
        self.rate = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setVisible(False)
        status = self.statusBar()
        status.addPermanentWidget(self.rate)
        status.addPermanentWidget(self.progress)
        status.addPermanentWidget(self.cancel_button)
        status.showMessage("Open a folder of images (Ctrl+O), or drop one on this window.")

    # --- settings ----------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 860)
        self.summary.target.setValue(int(self.settings.value("target", 100)))
        self._rebuild_recent()

    def operator(self) -> str | None:
        """The technician's name, asked once per app start and recorded with every change."""
        if self._operator is None:
            name, ok = QInputDialog.getText(self, "Who is working?", "Your name (recorded with every change you make):",
                                            text=str(self.settings.value("operator", "")))
            if not ok or not name.strip():
                return None
            self._operator = name.strip()
            self.settings.setValue("operator", self._operator)
        return self._operator

    def _recent(self) -> list[str]:
        recent = self.settings.value("recent") or []
        if isinstance(recent, str):  # an INI file gives back a one-item list as a plain string
            recent = [recent]
        return [str(r) for r in recent if r]

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self._recent()
        for path in recent[:8]:
            self.recent_menu.addAction(path, lambda p=path: self.open_folder(Path(p)))
        self.recent_menu.setEnabled(bool(recent))

    def _remember_folder(self, folder: Path) -> None:
        recent = [str(folder)] + [r for r in self._recent() if r != str(folder)]
        self.settings.setValue("recent", recent[:8])
        self.settings.setValue("last_folder", str(folder))
        self._rebuild_recent()

    # --- models ----------------------------------------------------------------------------
    def load_models(self, folders: tuple[Path, ...] = ()) -> None:
        self._model_folders = tuple(folders)
        self.models, problems = discover_models(*folders)
        self.assay.blockSignals(True)
        self.assay.clear()
        for info in self.models:
            acc = f" — test accuracy {info.accuracy:.1%}" if info.accuracy is not None else ""
            self.assay.addItem(f"{info.display_name} v{info.version}{acc}", info.key)
        self.assay.blockSignals(False)
        wanted = self.settings.value("assay")
        index = max(0, self.assay.findData(wanted)) if wanted else 0
        self.assay.setCurrentIndex(index)
        self.info = self.models[index] if self.models else None
        self._rebuild_hotkeys()
        for problem in problems:
            log.warning("skipped model: %s", problem)
        if problems:
            self.error("Some model files were skipped", "\n".join(problems))
        if not self.models:
            self.error("No model found", "No usable model was found in resources/models or the user models folder.")

    def select_task(self, task: str) -> None:
        for i, info in enumerate(self.models):
            if info.task == task:
                self.assay.setCurrentIndex(i)
                return

    def _assay_changed(self, index: int) -> None:
        if index < 0 or index >= len(self.models):
            return
        info = self.models[index]
        if self.folder is not None and self.info is not None and info.key != self.info.key:
            answer = QMessageBox.question(
                self, "Change the assay?",
                f"Classify the open folder “{self.folder.name}” with {info.display_name}?\n\n"
                f"Its session with {self.info.display_name} is kept and comes back when you switch back.")
            if answer != QMessageBox.StandardButton.Yes:
                self.assay.blockSignals(True)
                self.assay.setCurrentIndex(self.assay.findData(self.info.key))
                self.assay.blockSignals(False)
                return
        self.info = info
        self.settings.setValue("assay", self.info.key)
        self._rebuild_hotkeys()
        if self.folder is not None:
            self.open_folder(self.folder, guess=False)

    def _rebuild_hotkeys(self) -> None:
        for shortcut in self.hotkeys:
            shortcut.setParent(None)
        self.hotkeys = []
        self.bins.clear()
        self.bins.addItem(self._bin_item("All images", ALL))
        if self.info is None:
            return
        for c in self.info.classes:
            self.bins.addItem(self._bin_item(f"[{c.hotkey}] {c.label}", c.key))
            if c.hotkey:
                shortcut = QShortcut(QKeySequence(c.hotkey), self.gallery)
                shortcut.activated.connect(lambda key=c.key: self.reclassify_selected(key))
                self.hotkeys.append(shortcut)
        self.bins.addItem(self._bin_item("Review", REVIEW))
        self.bins.addItem(self._bin_item("Unreadable", UNREADABLE))
        self.bins.addItem(self._bin_item("Missing from folder", MISSING))
        self.bins.setCurrentRow(0)

    @staticmethod
    def _bin_item(text: str, key: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, key)
        item.setData(Qt.ItemDataRole.UserRole + 1, text)
        return item

    # --- folder and classification --------------------------------------------------------
    def choose_folder(self) -> None:
        start = str(self.settings.value("last_folder", str(Path.home())))
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", start)
        if folder:
            self.open_folder(Path(folder))

    def _model(self, info: ModelInfo) -> Model:
        if info.path not in self._loaded:
            self._loaded[info.path] = Model(info.path)
        return self._loaded[info.path]

    def open_folder(self, folder: Path, guess: bool = True) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            self.error("Cannot open folder", f"{folder} is not a folder (or no longer exists).")
            return
        if guess:
            task = guess_task(folder)
            if task and self.info and task != self.info.task:
                self.folder = None  # the assay change below must not reopen the old folder
                self.select_task(task)
        if self.info is None:
            self.error("No model", "There is no model to classify with.")
            return
        self.close_session()
        try:
            session = Session.open(folder, self._model(self.info), self.data_root)
        except (FolderError, ModelError, StoreError) as exc:
            self.error("Cannot open the folder", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a broken data folder must not take the app down
            log.exception("cannot open session")
            self.error("Cannot open the session", f"The session could not be opened: {exc}")
            return
        self.session, self.folder = session, folder
        # Slots are this window's methods, so Qt queues the worker thread's signals to the GUI
        # thread; each slot ignores a late signal from an earlier session or worker (`_stale`).
        self.adapter = adapter = SessionAdapter(session)
        adapter.cells_added.connect(self._cells_arrived)
        adapter.cells_changed.connect(self._cells_changed)
        adapter.state_changed.connect(self._state_changed)
        adapter.progress.connect(self._progress)
        adapter.notice.connect(self._notice)
        self.thumbnails.reset(folder)
        self.summary.set_mosaic(None)
        self.gallery_model.reset(session.cells(), self.info)
        self.banner.setVisible(False)
        self._state_changed(session.record())
        self._remember_folder(folder)
        self._start_worker()

    def close_session(self) -> None:
        """Stop any classification, then let go of the session (nothing is lost: it is all stored)."""
        self.stop_worker()
        if self.adapter is not None:
            self.adapter.detach()
            self.adapter = None
        if self.session is not None:
            self.session.close()
            self.session = None
        self.undo_stack.clear()

    def rescan(self) -> None:
        """Classify the folder again: new and changed files are taken in (open sessions only)."""
        if self.session is not None and not self.is_classifying():
            self.banner.setVisible(False)
            self._start_worker()

    def _start_worker(self) -> None:
        self.worker = worker = ClassifyWorker(self.session)
        worker.finished.connect(self._finished)
        worker.failed.connect(self._failed)
        self.thread = start_worker(worker)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setVisible(True)
        self.cancel_action.setEnabled(True)
        self.statusBar().showMessage(f"Scanning {self.folder} …")

    def _stale(self) -> bool:
        """True in a slot called by a signal of an adapter or worker that is no longer current."""
        sender = self.sender()
        return sender is not None and sender is not self.adapter and sender is not self.worker

    def _progress(self, p) -> None:
        if self._stale():
            return
        self.progress.setRange(0, p.total)
        self.progress.setValue(p.done)
        eta_text = f", {p.eta_s:.0f} s left" if p.eta_s != float("inf") else ""
        self.rate.setText(f"{p.done}/{p.total} · {p.images_per_s:.0f} images/s{eta_text}")

    def _cells_arrived(self, cells) -> None:
        if self._stale():
            return
        self.gallery_model.upsert(cells)
        now = time.monotonic()
        if now - self._summary_at >= 1.0:  # it recounts every cell: at most once a second while classifying
            self._summary_at = now
            self.refresh_summary()

    def _cells_changed(self, cells) -> None:
        if self._stale():
            return
        self.gallery_model.upsert(cells)
        self.refresh_summary()

    def _state_changed(self, record: SessionRecord) -> None:
        if self._stale():
            return
        name = record.specimen_id or (self.folder.name if self.folder else "")
        status = "signed off" if record.signed else ("reopened" if record.state == "reopened" else "")
        self.setWindowTitle(" — ".join(p for p in ("SlideTally", name, self.folder.name if self.folder else "", status)
                                       if p))
        self.refresh_summary()

    def _notice(self, text: str) -> None:
        if self._stale():
            return
        self.banner.setText(f"⚠ {text}")
        self.banner.setVisible(True)
        log.warning(text)

    def _finished(self, result) -> None:
        if self._stale():
            return
        self._end_progress()
        self.refresh_summary()
        total = self.gallery_model.rowCount()
        if result.cancelled:
            self.statusBar().showMessage(f"Cancelled: {result.classified} images classified and kept; reopen the folder "
                                         "to go on.")
        elif not result.applied:
            self.statusBar().showMessage(f"{total} images restored; the folder's changes were not taken in (see the banner).")
        else:
            self.statusBar().showMessage(f"{total} images ready ({result.classified} classified now). Review the Review "
                                         "bin, then sign off.")
        if self.info and self.info.task == "idc-patch":
            self._build_mosaic()

    def _failed(self, message: str) -> None:
        if self._stale():
            return
        self._end_progress()
        self.error("Classification stopped", f"Classification stopped: {message}\nEverything classified before this is kept.")

    def _end_progress(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.cancel_action.setEnabled(False)
        self.rate.clear()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel.set()
            self.statusBar().showMessage("Cancelling …")

    def stop_worker(self) -> None:
        """Cancel and wait: the worker checks the cancel flag while scanning and after every batch."""
        if self.worker is not None:
            self.worker.cancel.set()
        if self.thread is not None:
            self.thread.quit()
            if not self.thread.wait(30_000):
                log.error("the classification thread did not stop within 30 s")
        self._end_progress()
        self.worker = None
        self.thread = None

    def is_classifying(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def _build_mosaic(self) -> None:
        from desktop.ui.mosaic import MosaicJob

        cells = [c for c in self.gallery_model.cells if not c.unreadable and not c.missing]
        job = MosaicJob(self.folder, cells)
        job.signals.ready.connect(lambda mosaic: (self.summary.set_mosaic(mosaic), self.refresh_summary()))
        self._mosaic_job = job
        self.thumbnails._pool.start(job)

    # --- summary ----------------------------------------------------------------------------
    def refresh_summary(self) -> None:
        cells = self.gallery_model.cells
        record = self.session.record() if self.session else None
        self.summary.show_summary(cells, self.info if self.session else None, record.status_line() if record else "")
        tally = self.proxy.counts()
        for row in range(self.bins.count()):
            item = self.bins.item(row)
            key = item.data(Qt.ItemDataRole.UserRole)
            base = item.data(Qt.ItemDataRole.UserRole + 1)
            n = len(cells) if key == ALL else tally.get(key, 0)
            item.setText(f"{base}  ({n})")
            item.setHidden(key == MISSING and n == 0)
        signed = record is not None and record.signed
        self.signoff_action.setEnabled(record is not None and not signed)
        self.identity_action.setEnabled(record is not None and not signed)
        self.reopen_action.setEnabled(signed)
        self.verify_action.setEnabled(signed and not record.verified_by)

    def _bin_changed(self, current, _previous) -> None:
        if current is not None:
            self.proxy.set_bin(current.data(Qt.ItemDataRole.UserRole))

    # --- review actions ---------------------------------------------------------------------
    def selected_cells(self):
        return [self.proxy.data(i, CellRole) for i in self.gallery.selectionModel().selectedIndexes()]

    def _refuse_if_signed(self) -> bool:
        if self.session is not None and self.session.signed:
            self.error("Session signed off", "This session is signed off and read-only. "
                       "Use Review → Reopen (with a reason) to make changes.")
            return True
        return False

    def _push(self, make_command) -> None:
        """Carry out an action on the session; only an action that happened enters the undo stack."""
        if self._refuse_if_signed():
            return
        operator = self.operator()
        if operator is None:
            return
        try:
            command = make_command(operator)
        except SessionLocked as exc:
            self.error("Session signed off", str(exc))
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("action failed")
            self.error("That did not work", str(exc))
            return
        if command is not None:
            self.undo_stack.push(command)

    def undo(self) -> None:
        if self.undo_stack.canUndo() and not self._refuse_if_signed():
            self.undo_stack.undo()

    def redo(self) -> None:
        if self.undo_stack.canRedo() and not self._refuse_if_signed():
            self.undo_stack.redo()

    def reclassify_selected(self, key: str) -> None:
        self.reclassify([c.file for c in self.selected_cells() if not c.unreadable], key)

    def reclassify(self, files: list[str], key: str) -> None:
        if not files or self.session is None or self.info is None:
            return
        label = self.info.label_of(key)
        self._push(lambda operator: commands.reclassify(self.session, files, key, label, operator))
        self.statusBar().showMessage(f"{len(files)} cell(s) reclassified as {label}.", 4000)

    def _dropped_on_bin(self, ids: list[int], key: str) -> None:
        if key and not key.startswith("__"):
            wanted = set(ids)
            self.reclassify([c.file for c in self.gallery_model.cells if c.id in wanted], key)

    def confirm_selected(self) -> None:
        files = [c.file for c in self.selected_cells() if not c.unreadable]
        if files and self.session is not None:
            self._push(lambda operator: commands.confirm(self.session, files, operator))

    def preview(self) -> None:
        cells = self.selected_cells()
        current = self.gallery.currentIndex()
        cell = self.proxy.data(current, CellRole) if current.isValid() else (cells[0] if cells else None)
        if cell is not None and self.folder is not None and self.info is not None:
            PreviewDialog(self.folder, cell, self.info, self).exec()

    def _context_menu(self, pos) -> None:
        index = self.gallery.indexAt(pos)
        if not index.isValid() or self.info is None:
            return
        cell = self.proxy.data(index, CellRole)
        menu = QMenu(self)
        if not cell.unreadable:
            menu.addAction("Confirm AI call", self.confirm_selected)
            menu.addSeparator()
            for key, p in ranked_classes(cell, self.info.class_keys):
                c = next(c for c in self.info.classes if c.key == key)
                menu.addAction(f"{c.label}  ({p:.0%})  [{c.hotkey}]", lambda k=key: self.reclassify_selected(k))
            menu.addSeparator()
        menu.addAction("Large view", self.preview)
        menu.exec(self.gallery.viewport().mapToGlobal(pos))

    # --- identity, sign-off, verification, reopen ------------------------------------------------
    def edit_identity(self) -> None:
        if self.session is None or self._refuse_if_signed():
            return
        record = self.session.record()
        answer = IdentityForm.ask(self, "Specimen", record.specimen_id or self.folder.name, record.patient_id)
        operator = self.operator() if answer else None
        if answer and operator:
            self._guarded(lambda: self.session.set_identity(answer[0], answer[1], operator))

    def sign_off(self) -> None:
        if self.session is None:
            return
        if self.is_classifying():
            self.error("Still classifying", "Wait until classification has finished before signing off.")
            return
        record = self.session.record()
        answer = IdentityForm.ask(self, "Sign off", record.specimen_id or self.folder.name, record.patient_id,
                                  self._operator or "", note="Signing off makes the session read-only and the "
                                  "report final. Check the specimen ID and type your name.")
        if answer is None:
            return
        specimen, patient, name = answer
        try:
            if name:
                self.session.set_identity(specimen, patient, name)
            self.session.sign_off(name, specimen)
        except (SignOffRefused, SessionLocked, ValueError) as exc:
            self.error("Cannot sign off yet", str(exc))
            return
        self.undo_stack.clear()  # a signed-off session has nothing to undo
        self.statusBar().showMessage(f"Signed off by {name}. The session is now read-only.")

    def verify(self) -> None:
        if self.session is None or not self.session.signed:
            return
        name, ok = QInputDialog.getText(self, "Verify", "Second person's name (not the one who signed off):")
        if ok:
            self._guarded(lambda: self.session.verify(name))

    def reopen(self) -> None:
        if self.session is None or not self.session.signed:
            return
        reason, ok = QInputDialog.getText(self, "Reopen session", "Why is this signed-off session reopened?")
        if not ok:
            return
        operator = self.operator()
        if operator is None:
            return
        self._guarded(lambda: self.session.reopen(operator, reason))
        if not self.session.signed and self.session.pending_changes.any:
            self.rescan()  # the folder's changes, reported while signed, come in now

    def _guarded(self, fn) -> None:
        try:
            fn()
        except (SessionLocked, SignOffRefused, ValueError) as exc:
            self.error("Not possible", str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("action failed")
            self.error("That did not work", str(exc))

    def show_audit(self) -> None:
        if self.session is None:
            return
        dialog = AuditDialog(self, f"Audit trail — {self.folder.name}", self.session.audit(), self.export_audit)
        dialog.exec()

    # --- export -----------------------------------------------------------------------------
    def _export_dir(self) -> str:
        return str(self.settings.value("export_dir", str(Path.home())))

    def _now(self) -> str:
        return dt.datetime.now().astimezone().isoformat(timespec="seconds")

    def _exporter(self) -> str:
        return self._operator or "(not given)"

    def export_audit(self) -> None:
        if self.session is None:
            return
        default = str(Path(self._export_dir()) / f"{self.folder.name}-audit.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export the audit trail", default, "CSV files (*.csv)")
        if path:
            self.write_audit_csv(Path(path))

    def write_audit_csv(self, path: Path) -> bool:
        try:
            export_audit_csv(self.session.audit(), path, self.session.record(), self._now())
        except ExportError as exc:
            self.error("Export failed", str(exc))
            return False
        self.statusBar().showMessage(f"Audit trail exported: {path.name}.", 6000)
        return True

    def export_csv(self) -> None:
        if self.session is None or self.info is None:
            return
        default = str(Path(self._export_dir()) / f"{self.folder.name}-cells.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV (per image; the summary is written beside it)", default,
                                              "CSV files (*.csv)")
        if path:
            self.write_csv(Path(path))

    def write_csv(self, path: Path) -> tuple[Path, Path] | None:
        summary = path.with_name(path.stem.removesuffix("-cells") + "-summary.csv")
        try:
            export_csv(self.session.cells(), self.info, path, summary, record=self.session.record(),
                       changes=self.session.pending_changes, operator=self._exporter(), when=self._now(),
                       target=self.summary.target.value())
        except ExportError as exc:
            self.error("Export failed", str(exc))
            return None
        self.settings.setValue("export_dir", str(path.parent))
        self.statusBar().showMessage(f"Exported {path.name} and {summary.name}.", 6000)
        return path, summary

    def export_pdf(self) -> None:
        if self.session is None or self.info is None:
            return
        default = str(Path(self._export_dir()) / f"{self.folder.name}-report.pdf")
        path, _ = QFileDialog.getSaveFileName(self, "PDF report", default, "PDF files (*.pdf)")
        if path:
            self.write_pdf(Path(path))

    def write_pdf(self, path: Path) -> bool:
        from desktop.core.summary import idc_summary
        from desktop.ui.heatmap import heat_overlay_image
        from desktop.ui.report import report_html, write_pdf

        cells = self.session.cells()
        heat = None
        if self.info.task == "idc-patch":
            slide = idc_summary(cells, self.info)
            if slide.heat.size:
                heat = heat_overlay_image(slide.heat, slide.calls, self.summary._mosaic)
        html_text = report_html(cells, self.info, record=self.session.record(), changes=self.session.pending_changes,
                                operator=self._exporter(), when=self._now(), target=self.summary.target.value(),
                                heat=heat)
        try:
            write_pdf(path, html_text)
        except OSError as exc:
            self.error("Report failed", f"The report could not be written: {exc}")
            return False
        self.settings.setValue("export_dir", str(path.parent))
        self.statusBar().showMessage(f"Report written: {path}", 6000)
        return True

    # --- lab tools ----------------------------------------------------------------------------
    def show_verification(self) -> None:
        from desktop.ui.lab_tools import VerificationDialog

        if self.info is not None:
            VerificationDialog(self, self._model(self.info), self.data_root).exec()

    def show_adapt(self) -> None:
        from desktop.ui.lab_tools import AdaptDialog

        if self.info is not None:
            AdaptDialog(self, self._model(self.info), self.data_root, self.user_models, self._site_installed).exec()

    def _site_installed(self, path: Path) -> None:
        folders = self._model_folders + ((self.user_models,) if self._model_folders and
                                         self.user_models not in self._model_folders else ())
        current = self.info.key if self.info else None
        self.assay.blockSignals(True)
        self.load_models(folders)
        if current is not None:
            self.assay.setCurrentIndex(max(0, self.assay.findData(current)))
            self.info = self.models[self.assay.currentIndex()]
        self.assay.blockSignals(False)
        self.statusBar().showMessage(f"Site model installed: {path.name}. Choose it in the Assay list; the base model "
                                     "stays there too.", 10_000)

    # --- help -------------------------------------------------------------------------------
    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        QMessageBox.information(self, "Keyboard shortcuts", f"<table cellpadding=4>{rows}</table>")

    def show_model_card(self) -> None:
        if self.info is None:
            return
        card = self.info.path.with_suffix("").with_suffix(".card.md")
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Model card — {self.info.display_name}")
        layout = QVBoxLayout(dialog)
        text = QTextBrowser()
        text.setSearchPaths([str(card.parent)])
        text.setMarkdown(card.read_text(encoding="utf-8") if card.exists() else "No model card was shipped with this model.")
        layout.addWidget(text)
        dialog.resize(900, 700)
        dialog.exec()

    def show_about(self) -> None:
        import cv2
        import onnxruntime
        import PySide6

        models = "".join(f"<li>{m.display_name} {m.key} v{m.version}</li>" for m in self.models)
        licences = resource("LICENSES.md")
        QMessageBox.about(self, "About SlideTally", (
            f"<h3>SlideTally {__version__}</h3><p>CNN pre-classification for laboratory review.</p>"
            f"<p>Models:</p><ul>{models}</ul>"
            f"<p>PySide6 {PySide6.__version__} (LGPLv3) · ONNX Runtime {onnxruntime.__version__} (MIT) · "
            f"OpenCV {cv2.__version__} (Apache 2.0)</p>"
            "<p>Training data: PBC dataset (Acevedo et al. 2020, CC BY 4.0); Breast Histopathology Images "
            "(Janowczyk &amp; Madabhushi 2016; Cruz-Roa et al. 2014).</p>"
            f"<p>Log file: {user_data_dir() / 'slidetally.log'}</p>"
            + (f"<p>Licences: {licences}</p>" if licences.exists() else "")))

    def error(self, title: str, message: str) -> None:
        log.warning("%s: %s", title, message)
        if self.isVisible():
            QMessageBox.warning(self, title, message)
        else:
            self.statusBar().showMessage(f"{title}: {message}")

    # --- window events --------------------------------------------------------------------
    def dragEnterEvent(self, event):  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls and Path(urls[0].toLocalFile()).is_dir():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802 - Qt API
        urls = event.mimeData().urls()
        if urls:
            self.open_folder(Path(urls[0].toLocalFile()))

    def closeEvent(self, event):  # noqa: N802 - Qt API
        self.settings.setValue("geometry", self.saveGeometry())
        self.close_session()  # cancels and waits for the classifier: every stored call stays
        self.thumbnails.wait()
        super().closeEvent(event)
