"""The main window: assay, folder, gallery by class, summary, review, sign-off, export."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QThread
from PySide6.QtGui import QAction, QKeySequence, QShortcut, QUndoStack
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from desktop import __version__
from desktop.core.errors import SessionLocked, SlideTallyError
from desktop.core.inference.folder import guess_task
from desktop.core.inference.model import Model, ModelInfo, discover_models
from desktop.core.inference.slide import cell_offset
from desktop.core.records.domain import SessionRecord
from desktop.core.records.review import ALL, MISSING, REVIEW, UNREADABLE, ranked_classes
from desktop.core.records.session import Session
from desktop.core.report.summary import slide_grid
from desktop.core.resources import resource, user_data_dir, user_models_dir
from desktop.ui import commands
from desktop.ui.gallery import MIME_IDS, THUMB, THUMB_SIZES, BinFilter, CellRole, GalleryModel, ThumbnailCache
from desktop.ui.gallery_view import GalleryView, zoom_step
from desktop.ui.preview import CellViewer
from desktop.ui.record_actions import RecordActions
from desktop.ui.session_adapter import SessionAdapter
from desktop.ui.summary_panel import SummaryPanel
from desktop.ui.worker import ClassifyWorker, start_worker

log = logging.getLogger(__name__)
SHORTCUTS = [
    ("Ctrl+O", "Open a folder of images"),
    ("1 … 8", "Reclassify the selected cells (keys shown beside each class); the next cell is selected"),
    ("Enter", "Confirm the call of the selected cells; the next cell is selected"),
    ("R / N", "Go to the Review bin / next cell awaiting review"),
    ("Space / double-click", "Large view: ←/→ previous/next, 1 … 8 reclassify, Enter confirm, Esc close"),
    ("Ctrl+F", "Find cells by file name"),
    ("Ctrl+wheel / Ctrl+= Ctrl+-", "Thumbnail size"),
    ("Ctrl+A", "Select all cells in the current bin"),
    ("Ctrl+Z / Ctrl+Shift+Z (Ctrl+Y)", "Undo / redo"),
    ("Ctrl+E", "Export CSV (per image and summary)"),
    ("Ctrl+P", "Printable PDF report"),
    ("Ctrl+Shift+S", "Sign off"),
    ("Ctrl+I", "Specimen and patient ID"),
    ("Ctrl+Shift+A", "Audit trail"),
    ("Esc", "Cancel classification (closes the large view when it is open)"),
    ("F1", "This list"),
]

LEGEND = ("<span style='color:#1d4ed8'>✎ changed by you</span> · ✓ confirmed · "
          "<span style='color:#b45309'>amber: awaiting review</span> · "
          "<span style='color:#b00020'>red: unfamiliar, unreadable or missing</span>")


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


class MainWindow(RecordActions, QMainWindow):
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
        self.assay.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.assay.setMinimumContentsLength(22)
        self.assay.setToolTip("The assay: one per model found")
        self.assay.currentIndexChanged.connect(self._assay_changed)
        self.thumbnails = ThumbnailCache()
        self.gallery_model = GalleryModel(self.thumbnails)
        self.proxy = BinFilter()
        self.proxy.setSourceModel(self.gallery_model)
        self.gallery = GalleryView()
        self.gallery.setModel(self.proxy)
        self.gallery.customContextMenuRequested.connect(self._context_menu)
        self.gallery.doubleClicked.connect(lambda _: self.preview())
        self.gallery.zoom_requested.connect(lambda step: self.thumb_slider.setValue(
            THUMB_SIZES.index(zoom_step(THUMB_SIZES[self.thumb_slider.value()], step))))
        self.find = QLineEdit()
        self.find.setPlaceholderText("Find by file name (Ctrl+F)")
        self.find.setClearButtonEnabled(True)
        self.find.textChanged.connect(self.proxy.set_name_filter)
        self.thumb_slider = QSlider(Qt.Orientation.Horizontal)
        self.thumb_slider.setRange(0, len(THUMB_SIZES) - 1)
        self.thumb_slider.setValue(THUMB_SIZES.index(THUMB))
        self.thumb_slider.setMaximumWidth(140)
        self.thumb_slider.setToolTip("Thumbnail size (Ctrl+wheel on the gallery)")
        self.thumb_slider.valueChanged.connect(self._thumb_size_changed)
        self.names_box = QCheckBox("File names")
        self.names_box.toggled.connect(self._thumb_size_changed)
        tools = QHBoxLayout()
        tools.setContentsMargins(0, 0, 0, 0)
        tools.addWidget(self.find, 1)
        tools.addWidget(QLabel("Size"))
        tools.addWidget(self.thumb_slider)
        tools.addWidget(self.names_box)
        gallery_box = QWidget()
        gallery_layout = QVBoxLayout(gallery_box)
        gallery_layout.setContentsMargins(0, 0, 0, 0)
        gallery_layout.addLayout(tools)
        gallery_layout.addWidget(self.gallery, 1)
        self.bins = BinList(self._dropped_on_bin)
        self.bins.currentItemChanged.connect(self._bin_changed)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        legend.setStyleSheet("font-size: 8pt;")
        bins_box = QWidget()
        bins_layout = QVBoxLayout(bins_box)
        bins_layout.setContentsMargins(0, 0, 0, 0)
        bins_layout.addWidget(self.bins, 1)
        bins_layout.addWidget(legend)
        bins_box.setMinimumWidth(130)
        bins_box.setMaximumWidth(280)
        self.summary = SummaryPanel()
        self.summary.setMinimumWidth(240)
        self.summary.target_changed.connect(lambda v: (self.settings.setValue("target", v), self.refresh_summary()))
        self.summary.heat.tile_clicked.connect(self._tile_clicked)
        splitter = QSplitter()
        splitter.addWidget(bins_box)
        splitter.addWidget(gallery_box)
        splitter.addWidget(self.summary)
        splitter.setChildrenCollapsible(False)
        splitter.setStretchFactor(1, 3)
        splitter.setStretchFactor(2, 1)
        splitter.setSizes([200, 760, 380])
        self.splitter = splitter
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
        self.confirm_action = self._action("&Confirm call", self.confirm_selected)
        self.confirm_action.setShortcuts([QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)])
        self.preview_action = self._action("&Large view", self.preview, Qt.Key.Key_Space)
        self.next_action = self._action("&Next awaiting review", self.next_unreviewed, "N")
        self.review_bin_action = self._action("Go to the &Review bin", self.go_to_review, "R")
        self.find_action = self._action("&Find by file name", lambda: (self.find.setFocus(), self.find.selectAll()), "Ctrl+F")
        self.zoom_in_action = self._action("Larger thumbnails", lambda: self.gallery.zoom_requested.emit(1), "Ctrl+=")
        self.zoom_out_action = self._action("Smaller thumbnails", lambda: self.gallery.zoom_requested.emit(-1), "Ctrl+-")
        self.cancel_action = self._action("Cancel classification", self.cancel, Qt.Key.Key_Escape,
                                          "Stop classifying; what is done is kept")
        self.cancel_action.setEnabled(False)
        self.addAction(self.cancel_action)  # Esc works wherever the focus is in the window
        self.undo_action = self._action("&Undo", self.undo, QKeySequence("Ctrl+Z"))
        self.redo_action = self._action("&Redo", self.redo)
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        self.undo_stack.canUndoChanged.connect(self.undo_action.setEnabled)
        self.undo_stack.canRedoChanged.connect(self.redo_action.setEnabled)
        for a in (self.confirm_action, self.preview_action, self.next_action, self.review_bin_action):
            a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.gallery.addAction(a)
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        export_menu = file_menu.addMenu("E&xport")
        self.hl7_action = self._action("&HL7 v2 message (ORU^R01)…", self.export_hl7)
        self.fhir_action = self._action("&FHIR Bundle…", self.export_fhir)
        export_menu.addActions([self.export_action, self.report_action, self.hl7_action, self.fhir_action])
        self.lis_folder_action = self._action("&LIS export folder…", self.choose_lis_folder,
                                              tip="Where the HL7 and FHIR files are written after each sign-off")
        file_menu.addAction(self.lis_folder_action)
        file_menu.addSeparator()
        file_menu.addAction(self._action("&Quit", self.close, QKeySequence.StandardKey.Quit))
        edit = self.menuBar().addMenu("&Edit")
        edit.addActions([self.undo_action, self.redo_action])
        edit.addSeparator()
        edit.addActions([self.confirm_action, self.next_action, self.review_bin_action, self.preview_action])
        edit.addSeparator()
        edit.addActions([self.find_action, self.zoom_in_action, self.zoom_out_action, self.cancel_action])
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
        for action, short in ((self.open_action, "Open"), (self.export_action, "CSV"), (self.report_action, "PDF"),
                              (self.signoff_action, "Sign off")):
            action.setIconText(short)  # short toolbar labels: nothing hides behind » on a small screen
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
        self._clamp_to_screen()
        state = self.settings.value("splitter")
        if state is not None:
            self.splitter.restoreState(state)
        else:  # first start: shares of the window, so a small screen keeps a readable summary
            width = max(self.width(), 600)
            self.splitter.setSizes([int(0.16 * width), int(0.52 * width), int(0.32 * width)])
        self.summary.target.setValue(int(self.settings.value("target", 100)))
        size = int(self.settings.value("thumb_size", THUMB))
        self.thumb_slider.setValue(THUMB_SIZES.index(size) if size in THUMB_SIZES else THUMB_SIZES.index(THUMB))
        self.names_box.setChecked(str(self.settings.value("file_names", "false")).lower() == "true")
        self._rebuild_recent()

    def _clamp_to_screen(self) -> None:
        """A geometry saved on a larger screen (or at another scale) is fitted to this one."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        width, height = min(self.width(), available.width()), min(self.height(), available.height() - 30)
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        frame = self.frameGeometry()
        if not available.contains(frame):
            self.move(max(available.left(), min(frame.left(), available.right() - frame.width())),
                      max(available.top(), min(frame.top(), available.bottom() - frame.height())))

    def _save_settings(self) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        current = self.bins.currentItem()
        if current is not None:
            self.settings.setValue("bin", current.data(Qt.ItemDataRole.UserRole))

    def _thumb_size_changed(self, *_) -> None:
        size = THUMB_SIZES[self.thumb_slider.value()]
        names = self.names_box.isChecked()
        self.thumbnails.set_size(size)
        self.gallery_model.show_names = names
        self.gallery.set_thumb_size(size, names)
        self.gallery_model.layoutChanged.emit()
        self.settings.setValue("thumb_size", size)
        self.settings.setValue("file_names", names)

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
        # the assay in use stays in use when the list is reloaded (a site model was installed, say)
        wanted = self.info.key if self.info is not None else self.settings.value("assay")
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
            guess = guess_task(self.folder)
            warning = (f"\n\nThese images look like another assay's ({guess}); {info.display_name} is for {info.task}."
                       if guess and guess != info.task else "")
            if not self.ask("Change the assay?",
                            f"Classify the open folder “{self.folder.name}” with {info.display_name}?{warning}\n\n"
                            f"Its session with {self.info.display_name} is kept and comes back when you switch back."):
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
                # only while the gallery has the focus: typing a digit in the find box reclassifies nothing
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.activated.connect(lambda key=c.key: self.reclassify_selected(key))
                self.hotkeys.append(shortcut)
        self.bins.addItem(self._bin_item("Review", REVIEW))
        self.bins.addItem(self._bin_item("Unreadable", UNREADABLE))
        self.bins.addItem(self._bin_item("Missing from folder", MISSING))
        wanted = self.settings.value("bin")
        rows = [r for r in range(self.bins.count()) if self.bins.item(r).data(Qt.ItemDataRole.UserRole) == wanted]
        self.bins.setCurrentRow(rows[0] if rows else 0)

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
        except SlideTallyError as exc:
            self.error("Cannot open the folder", str(exc))
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
        self.thumbnails.reset(folder, self.info.patch.size)
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

    def rescan(self, check_foreign: bool = True) -> None:
        """Classify the folder again: new and changed files are taken in (open sessions only)."""
        if self.session is not None and not self.is_classifying():
            self.stop_worker()
            self.banner.setVisible(False)
            self._start_worker(check_foreign)

    def _start_worker(self, check_foreign: bool = True) -> None:
        self.worker = worker = ClassifyWorker(self.session, check_foreign)
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
        if result.foreign and self.ask("These images look foreign", result.foreign + "\n\nClassify them anyway?"):
            self.rescan(check_foreign=False)

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

        cells = self.gallery_model.cells
        job = MosaicJob(self.folder, cells, slide_grid(cells, self.info))
        job.signals.ready.connect(lambda mosaic: (self.summary.set_mosaic(mosaic), self.refresh_summary()))
        self._mosaic_job = job
        self.thumbnails._pool.start(job)

    # --- summary ----------------------------------------------------------------------------
    def refresh_summary(self) -> None:
        cells = self.gallery_model.cells
        record = self.session.record() if self.session else None
        self.summary.show_report(self.report(cells, with_history=False) if record is not None else None)
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
        self.gallery.select_current_if_none()
        return [self.proxy.data(i, CellRole) for i in self.gallery.selectionModel().selectedIndexes()]

    def _advance(self, rows: list[int], files: list[str]) -> None:
        """After an action, select the next cell: the one after the acted-on cell, or the one
        now in its place when the cell left the bin (the Review bin empties as you go)."""
        if not rows:
            return
        row = rows[0]
        here = self.proxy.data(self.proxy.index(row, 0), CellRole) if row < self.proxy.rowCount() else None
        if here is not None and here.file in files:
            row = rows[-1] + 1
        self.gallery.select_row(row)

    def next_unreviewed(self) -> None:
        """Select the next cell awaiting review after the current one; from another bin, go to Review."""
        rows = self.gallery.selected_rows()
        start = rows[-1] + 1 if rows else 0
        for row in range(start, self.proxy.rowCount()):
            if self.proxy.data(self.proxy.index(row, 0), CellRole).needs_review:
                self.gallery.select_row(row)
                return
        if any(c.needs_review for c in self.gallery_model.cells):
            self.go_to_review()
        else:
            self.statusBar().showMessage("Nothing is awaiting review.", 4000)

    def go_to_review(self) -> None:
        """The Review bin, its first (least confident) cell selected, keys ready."""
        review = [r for r in range(self.bins.count()) if self.bins.item(r).data(Qt.ItemDataRole.UserRole) == REVIEW]
        if review:
            self.bins.setCurrentRow(review[0])
            self.gallery.setFocus()
            self.gallery.select_row(0)

    def _refuse_if_signed(self) -> bool:
        if self.session is not None and self.session.signed:
            self.error("Session signed off", "This session is signed off and read-only. "
                       "Use Review → Reopen (with a reason) to make changes.")
            return True
        return False

    def _push(self, make_command) -> bool:
        """Carry out an action on the session; only an action that happened enters the undo stack."""
        if self._refuse_if_signed():
            return False
        operator = self.operator()
        if operator is None:
            return False
        try:
            command = make_command(operator)
        except SessionLocked as exc:
            self.error("Session signed off", str(exc))
            return False
        except SlideTallyError as exc:
            self.error("That did not work", str(exc))
            return False
        if command is not None:
            self.undo_stack.push(command)
        return True

    def undo(self) -> None:
        if self.undo_stack.canUndo() and not self._refuse_if_signed():
            self.undo_stack.undo()

    def redo(self) -> None:
        if self.undo_stack.canRedo() and not self._refuse_if_signed():
            self.undo_stack.redo()

    def reclassify_selected(self, key: str) -> None:
        rows = self.gallery.selected_rows()
        files = [c.file for c in self.selected_cells() if not c.unreadable]
        if self.reclassify(files, key):
            self._advance(rows, files)

    def reclassify(self, files: list[str], key: str) -> bool:
        if not files or self.session is None or self.info is None:
            return False
        label = self.info.label_of(key)
        done = self._push(lambda operator: commands.reclassify(self.session, files, key, label, operator))
        if done:
            self.statusBar().showMessage(f"{len(files)} cell(s) reclassified as {label}.", 4000)
        return done

    def _dropped_on_bin(self, ids: list[int], key: str) -> None:
        if key and not key.startswith("__"):
            wanted = set(ids)
            self.reclassify([c.file for c in self.gallery_model.cells if c.id in wanted], key)

    def confirm_selected(self) -> None:
        rows = self.gallery.selected_rows()
        cells = [c for c in self.selected_cells() if not c.unreadable]
        unfamiliar = sum(c.unfamiliar and not c.confirmed for c in cells)
        if len(cells) > 1 and unfamiliar and not self.ask(
                "Confirm Unfamiliar cells?", f"Confirm the calls of {len(cells)} cells? {unfamiliar} of them are "
                "Unfamiliar: the model has not seen cells like them, and its call is often wrong. Look at them one by "
                "one (Space) unless you are sure."):
            return
        files = [c.file for c in cells]
        if self.confirm_files(files):
            self._advance(rows, files)

    def confirm_files(self, files: list[str]) -> bool:
        if not files or self.session is None:
            return False
        return self._push(lambda operator: commands.confirm(self.session, files, operator))

    def preview(self) -> None:
        current = self.gallery.currentIndex()
        rows = self.gallery.selected_rows()
        row = current.row() if current.isValid() else (rows[0] if rows else -1)
        if row < 0 or self.folder is None or self.info is None:
            return
        viewer = CellViewer(self, self.folder, self.info, self.proxy, row, self.reclassify, self.confirm_files)
        viewer.exec()
        self.gallery.select_row(viewer.row)

    def _tile_clicked(self, column: int, row: int) -> None:
        """A click on the slide map selects that patch in the gallery (All images, no file filter)."""
        if self.info is None:
            return
        grid = slide_grid(self.gallery_model.cells, self.info)
        x, y = grid.offset(column, row)
        self.find.clear()
        self.bins.setCurrentRow(0)
        for r in range(self.proxy.rowCount()):
            cell = self.proxy.data(self.proxy.index(r, 0), CellRole)
            offset = None if cell.unreadable or cell.missing else cell_offset(cell)
            if offset is not None and grid.place(offset) == (column, row):
                self.gallery.select_row(r)
                self.gallery.setFocus()
                self.statusBar().showMessage(f"Patch at x={x}, y={y}: {cell.file}", 5000)
                return

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
        self.load_models(folders)  # the assay in use stays selected
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

    def ask(self, title: str, question: str) -> bool:
        """A yes/no question whose safe answer, No, is the default (Enter does not say yes by accident)."""
        answer = QMessageBox.question(self, title, question, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

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
        self._save_settings()
        self.close_session()  # cancels and waits for the classifier: every stored call stays
        self.thumbnails.wait()
        super().closeEvent(event)
