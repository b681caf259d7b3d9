"""The main window: assay, folder, gallery by class, summary, review, sign-off, export."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, QThread, QTimer
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
)

from desktop import __version__
from desktop.core.analysis import guess_task
from desktop.core.export import ExportError, export_csv
from desktop.core.model import ModelInfo, discover_models
from desktop.core.resources import resource, user_data_dir
from desktop.core.review import ALL, REVIEW, UNREADABLE, ranked_classes
from desktop.core.store import SessionLocked, SessionStore, SignOffRefused
from desktop.ui.commands import ConfirmCommand, ReclassifyCommand
from desktop.ui.gallery import MIME_IDS, THUMB, BinFilter, CellRole, GalleryModel, ThumbnailCache
from desktop.ui.preview import PreviewDialog
from desktop.ui.summary_panel import SummaryPanel
from desktop.ui.worker import ClassifyWorker, start_worker

log = logging.getLogger(__name__)
SHORTCUTS = [
    ("Ctrl+O", "Open a folder of images"),
    ("1 … 8", "Reclassify the selected cells (keys shown beside each class)"),
    ("Enter", "Confirm the AI call of the selected cells"),
    ("Space / double-click", "Large view with all class probabilities"),
    ("Ctrl+A", "Select all cells in the current bin"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo"),
    ("Ctrl+E", "Export CSV (per image and summary)"),
    ("Ctrl+P", "Printable PDF report"),
    ("Ctrl+Shift+S", "Sign off"),
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
        self.store: SessionStore | None = None
        self.worker: ClassifyWorker | None = None
        self.thread: QThread | None = None
        self._last_id = 0
        self.undo_stack = QUndoStack(self)
        self.setWindowTitle("SlideTally")
        self.setAcceptDrops(True)
        self._build()
        self._restore_settings()
        self._summary_at = 0.0
        self.poll = QTimer(self)
        self.poll.setInterval(250)
        self.poll.timeout.connect(self._poll_results)

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
        self.setCentralWidget(splitter)
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
        self.confirm_action = self._action("&Confirm AI call", self.confirm_selected, Qt.Key.Key_Return)
        self.preview_action = self._action("&Large view", self.preview, Qt.Key.Key_Space)
        self.cancel_action = self._action("Cancel", self.cancel, Qt.Key.Key_Escape, "Stop classifying; what is done is kept")
        self.cancel_action.setEnabled(False)
        self.undo_action = self.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence.StandardKey.Redo])
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
        review.addActions([self.signoff_action, self.reopen_action])
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

    def operator(self) -> str:
        return str(self.settings.value("operator", "")) or getpass.getuser()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = [r for r in (self.settings.value("recent") or []) if r]
        if isinstance(recent, str):
            recent = [recent]
        for path in recent[:8]:
            self.recent_menu.addAction(path, lambda p=path: self.open_folder(Path(p)))
        self.recent_menu.setEnabled(bool(recent))

    def _remember_folder(self, folder: Path) -> None:
        recent = self.settings.value("recent") or []
        if isinstance(recent, str):
            recent = [recent]
        recent = [str(folder)] + [r for r in recent if r != str(folder)]
        self.settings.setValue("recent", recent[:8])
        self.settings.setValue("last_folder", str(folder))
        self._rebuild_recent()

    # --- models ----------------------------------------------------------------------------
    def load_models(self, folders: tuple[Path, ...] = ()) -> None:
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
        self.info = self.models[index]
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
        self.stop_worker()
        if self.store is not None:
            self.store.close()
        try:
            self.store = SessionStore(folder, self.info, self.data_root)
        except Exception as exc:  # noqa: BLE001
            log.exception("cannot open session store")
            self.error("Cannot open the session", f"The session store could not be opened: {exc}")
            return
        self.folder = folder
        self.undo_stack.clear()
        self.thumbnails.reset(folder)
        self.summary.set_mosaic(None)
        cells = self.store.cells()
        self._last_id = max((c.id for c in cells), default=0)
        self.gallery_model.reset(cells, self.info)
        self.setWindowTitle(f"SlideTally — {folder.name}")
        self._remember_folder(folder)
        self.refresh_summary()
        self._start_worker()

    def _start_worker(self) -> None:
        self.worker = ClassifyWorker(self.folder, self.info.path, self.data_root)
        self.worker.planned.connect(self._planned)
        self.worker.progress.connect(self._progress)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)
        self.thread = start_worker(self.worker)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setVisible(True)
        self.cancel_action.setEnabled(True)
        self.statusBar().showMessage(f"Scanning {self.folder} …")
        self.poll.start()

    def _planned(self, todo: int, known: int) -> None:
        if todo:
            self.progress.setRange(0, todo)
            self.progress.setValue(0)
            restored = f" ({known} restored from the saved session)" if known else ""
            self.statusBar().showMessage(f"Classifying {todo} images{restored} …")

    def _progress(self, done: int, total: int, rate: float, eta: float) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        eta_text = f", {eta:.0f} s left" if eta >= 0 else ""
        self.rate.setText(f"{done}/{total} · {rate:.0f} images/s{eta_text}")

    def _finished(self, done: int, cancelled: bool) -> None:
        self.poll.stop()
        self._end_progress()
        self._poll_results(summary=True)  # the last rows; a full reload would re-layout 20,000 cells
        total = self.gallery_model.rowCount()
        if cancelled:
            self.statusBar().showMessage(f"Cancelled: {done} images classified and kept; reopen the folder to go on.")
        else:
            self.statusBar().showMessage(f"{total} images ready ({done} classified now). Review the Review bin, then sign off.")
        if self.info and self.info.task == "idc-patch":
            self._build_mosaic()

    def _failed(self, message: str) -> None:
        self.poll.stop()
        self._end_progress()
        self._reload()
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
        if self.worker is not None:
            self.worker.cancel.set()
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait(10_000)
        self.poll.stop()
        self.worker = None
        self.thread = None

    def is_classifying(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def _poll_results(self, summary: bool = False) -> None:
        """New rows from the store into the gallery; the summary at most once a second
        while classifying (it recounts every cell), and always when `summary` is set."""
        if self.store is None:
            return
        new = self.store.cells_after(self._last_id)
        if new:
            self._last_id = max(c.id for c in new)
            self.gallery_model.upsert(new)
        now = time.monotonic()
        if summary or (new and now - self._summary_at >= 1.0):
            self._summary_at = now
            self.refresh_summary()

    def _reload(self) -> None:
        if self.store is None:
            return
        cells = self.store.cells()
        self._last_id = max((c.id for c in cells), default=0)
        self.gallery_model.reset(cells, self.info)
        self.refresh_summary()

    def _build_mosaic(self) -> None:
        from desktop.ui.mosaic import MosaicJob

        cells = [c for c in self.gallery_model.cells if not c.unreadable]
        job = MosaicJob(self.folder, cells)
        job.signals.ready.connect(lambda mosaic: (self.summary.set_mosaic(mosaic), self.refresh_summary()))
        self._mosaic_job = job
        self.thumbnails._pool.start(job)

    # --- summary ----------------------------------------------------------------------------
    def refresh_summary(self) -> None:
        cells = self.gallery_model.cells
        signed = self.store.meta("signed_by") if self.store and self.store.signed_off else ""
        self.summary.show_summary(cells, self.info if self.store else None, signed or "")
        tally = self.proxy.counts()
        for row in range(self.bins.count()):
            item = self.bins.item(row)
            key = item.data(Qt.ItemDataRole.UserRole)
            base = item.data(Qt.ItemDataRole.UserRole + 1)
            n = len(cells) if key == ALL else tally.get(key, 0)
            item.setText(f"{base}  ({n})")
        self.signoff_action.setEnabled(self.store is not None and not self.store.signed_off)
        self.reopen_action.setEnabled(self.store is not None and self.store.signed_off)

    def _bin_changed(self, current, _previous) -> None:
        if current is not None:
            self.proxy.set_bin(current.data(Qt.ItemDataRole.UserRole))

    # --- review actions ---------------------------------------------------------------------
    def selected_cells(self):
        return [self.proxy.data(i, CellRole) for i in self.gallery.selectionModel().selectedIndexes()]

    def _refresh_cells(self, ids: list[int]) -> None:
        if self.store is None or not ids:
            return
        id_list = ",".join(str(int(i)) for i in ids)
        self.gallery_model.upsert(self.store.cells(f"WHERE id IN ({id_list})"))
        self.refresh_summary()

    def _guarded(self, fn) -> None:
        try:
            fn()
        except SessionLocked as exc:
            self.error("Session signed off", str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("action failed")
            self.error("That did not work", str(exc))

    def reclassify_selected(self, key: str) -> None:
        ids = [c.id for c in self.selected_cells() if not c.unreadable]
        self.reclassify(ids, key)

    def reclassify(self, ids: list[int], key: str) -> None:
        if not ids or self.store is None or self.info is None:
            return
        label = self.info.label_of(key)
        self._guarded(lambda: self.undo_stack.push(
            ReclassifyCommand(self.store, ids, key, self.operator(), label, self._refresh_cells)))
        self.statusBar().showMessage(f"{len(ids)} cell(s) reclassified as {label}.", 4000)

    def _dropped_on_bin(self, ids: list[int], key: str) -> None:
        if key and not key.startswith("__"):
            self.reclassify(ids, key)

    def confirm_selected(self) -> None:
        ids = [c.id for c in self.selected_cells() if not c.unreadable]
        if ids and self.store is not None:
            self._guarded(lambda: self.undo_stack.push(ConfirmCommand(self.store, ids, self.operator(), self._refresh_cells)))

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

    def sign_off(self) -> None:
        if self.store is None:
            return
        if self.is_classifying():
            self.error("Still classifying", "Wait until classification has finished before signing off.")
            return
        name, ok = QInputDialog.getText(self, "Sign off", "Operator name:", text=str(self.settings.value("operator", "")))
        if not ok:
            return
        try:
            self.store.sign_off(name)
        except (SignOffRefused, SessionLocked) as exc:
            self.error("Cannot sign off yet", str(exc))
            return
        self.settings.setValue("operator", name.strip())
        self.refresh_summary()
        self.statusBar().showMessage(f"Signed off by {name.strip()}. The session is now read-only.")

    def reopen(self) -> None:
        if self.store is None or not self.store.signed_off:
            return
        reason, ok = QInputDialog.getText(self, "Reopen session", "Why is this signed-off session reopened?")
        if ok:
            self._guarded(lambda: (self.store.reopen(self.operator(), reason), self.refresh_summary()))

    # --- export -----------------------------------------------------------------------------
    def _export_dir(self) -> str:
        return str(self.settings.value("export_dir", str(Path.home())))

    def export_csv(self) -> None:
        if self.store is None or self.info is None:
            return
        default = str(Path(self._export_dir()) / f"{self.folder.name}-cells.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export CSV (per image; the summary is written beside it)", default,
                                              "CSV files (*.csv)")
        if path:
            self.write_csv(Path(path))

    def write_csv(self, path: Path) -> tuple[Path, Path] | None:
        summary = path.with_name(path.stem.removesuffix("-cells") + "-summary.csv")
        try:
            export_csv(self.store.cells(), self.info, path, summary, folder=str(self.folder), operator=self.operator(),
                       when=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                       signed=self.store.meta("signed_by") or "", target=self.summary.target.value())
        except ExportError as exc:
            self.error("Export failed", str(exc))
            return None
        self.settings.setValue("export_dir", str(path.parent))
        self.statusBar().showMessage(f"Exported {path.name} and {summary.name}.", 6000)
        return path, summary

    def export_pdf(self) -> None:
        if self.store is None or self.info is None:
            return
        default = str(Path(self._export_dir()) / f"{self.folder.name}-report.pdf")
        path, _ = QFileDialog.getSaveFileName(self, "PDF report", default, "PDF files (*.pdf)")
        if path:
            self.write_pdf(Path(path))

    def write_pdf(self, path: Path) -> bool:
        from desktop.core.summary import idc_summary
        from desktop.ui.heatmap import heat_overlay_image
        from desktop.ui.report import report_html, write_pdf

        cells = self.store.cells()
        heat = None
        if self.info.task == "idc-patch":
            slide = idc_summary(cells, self.info)
            if slide.heat.size:
                heat = heat_overlay_image(slide.heat, slide.calls, self.summary._mosaic)
        html_text = report_html(cells, self.info, folder=str(self.folder), operator=self.operator(),
                                when=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                                signed=self.store.meta("signed_by") or "", target=self.summary.target.value(), heat=heat)
        try:
            write_pdf(path, html_text)
        except OSError as exc:
            self.error("Report failed", f"The report could not be written: {exc}")
            return False
        self.settings.setValue("export_dir", str(path.parent))
        self.statusBar().showMessage(f"Report written: {path}", 6000)
        return True

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
        self.stop_worker()
        self.thumbnails.wait()
        if self.store is not None:
            self.store.close()
        super().closeEvent(event)
