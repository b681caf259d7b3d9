"""The session the window shows: the models and the assay in use, opening and closing a folder's
session, and its classification off the GUI thread; the session's events arrive through one
SessionAdapter and update the gallery and the summary."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMainWindow

from desktop.core.errors import SlideTallyError
from desktop.core.inference.folder import guess_task
from desktop.core.inference.model import Model, discover_models
from desktop.core.inference.model_info import BLOOD, IDC, MPP_RANGE, ModelInfo
from desktop.core.inference.wsi import SLIDE_FILTER, ScaleUnknown
from desktop.core.records.domain import SessionRecord, SessionState
from desktop.core.records.integrity import ALTERED
from desktop.core.records.session import ClassifyResult, Session, why_not_openable
from desktop.core.report.assay_report import percent_text
from desktop.core.report.summary import slide_grid
from desktop.ui.busy import run_busy
from desktop.ui.gallery import GalleryRows
from desktop.ui.session_adapter import SessionAdapter
from desktop.ui.worker import ClassifyWorker, start_worker

log = logging.getLogger(__name__)
SUMMARY_EVERY_S = 1.0  # while cells arrive the summary recounts every cell: at most once a second


class SessionController(QObject):
    """Holds the open Session (or none) and everything that follows its life. A QObject of the GUI
    thread, so the worker thread's signals reach its slots queued, on this thread."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.models: list[ModelInfo] = []
        self.info: ModelInfo | None = None
        self.folder: Path | None = None
        self.session: Session | None = None
        self.adapter: SessionAdapter | None = None
        self.worker: ClassifyWorker | None = None
        self.classify_thread = None
        self.model_folders: tuple[Path, ...] = ()
        self._loaded: dict[Path, Model] = {}  # ONNX Runtime sessions, loaded once per model file
        self._summary_at = 0.0
        self._mosaic_jobs: list = []
        self._filters: dict[Path, str] = {}  # the find box's text per folder, while the app runs
        self._shut = False  # the window is closing: nothing new is opened or started

    # --- models and the assay -----------------------------------------------------------------
    def load_models(self, folders: tuple[Path, ...] = ()) -> None:
        w = self.w
        self.model_folders = tuple(folders)
        self.models, problems = discover_models(*folders)
        w.assay.blockSignals(True)
        w.assay.clear()
        for info in self.models:
            acc = f" — {info.accuracy_label} {percent_text(info.accuracy)}" if info.accuracy is not None else ""
            w.assay.addItem(f"{info.display_name} v{info.version}{acc}", info.key)
        w.assay.blockSignals(False)
        # the assay in use stays in use when the list is reloaded (a site model was installed, say)
        wanted = self.info.key if self.info is not None else w.settings.assay
        index = max(0, w.assay.findData(wanted)) if wanted else 0
        w.assay.setCurrentIndex(index)
        self.info = self.models[index] if self.models else None
        w.review.rebuild_bins(self.info)
        w.records.refresh()  # the bins' counts come back (a site model was installed, say)
        for problem in problems:
            log.warning("skipped model: %s", problem)
        if problems:
            w.error("Some model files were skipped", "\n".join(problems))
        if not self.models:
            w.error("No model found", "No usable model was found in resources/models or the user models folder.")

    def select_task(self, task: str) -> None:
        for i, info in enumerate(self.models):
            if info.task == task:
                self.w.assay.setCurrentIndex(i)
                return

    def assay_changed(self, index: int) -> None:
        w = self.w
        if index < 0 or index >= len(self.models):
            return
        info = self.models[index]
        if self.folder is not None and self.info is not None and info.key != self.info.key:
            folder = self.folder
            guess = run_busy(w, f"Looking at {folder.name} …", lambda: guess_task(folder, self._blood_model()))
            other = next((m.display_name for m in self.models if m.task == guess), "another assay")
            warning = (f"\n\nThese images look like images for {other}, not for {info.display_name}."
                       if guess and guess != info.task else "")
            if not w.ask("Change the assay?",
                         f"Classify the open folder “{self.folder.name}” with {info.display_name}?{warning}\n\n"
                         f"Its session with {self.info.display_name} is kept and comes back when you switch back."):
                w.assay.blockSignals(True)
                w.assay.setCurrentIndex(w.assay.findData(self.info.key))
                w.assay.blockSignals(False)
                return
        self.info = info
        w.settings.assay = info.key
        w.review.rebuild_bins(info)
        if self.folder is not None:
            self.open_folder(self.folder, guess=False)

    def model(self, info: ModelInfo) -> Model:
        if info.path not in self._loaded:  # the whole graph serves: its split would pause the window
            self._loaded[info.path] = Model(info.path, split_front_end=False)
        return self._loaded[info.path]

    # --- the folder's session -----------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.w, "Open a folder of images", self.w.settings.last_folder)
        if folder:
            self.open_folder(Path(folder))

    def choose_slide(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Open a whole-slide image", self.w.settings.last_folder, SLIDE_FILTER)
        if path:
            self.open_folder(Path(path))

    def open_folder(self, folder: Path | str, guess: bool = True) -> None:
        w, folder = self.w, Path(folder)
        problem = why_not_openable(folder)
        if problem:
            w.error("Cannot open folder", problem)
            return
        slide = folder.is_file()
        if guess:
            # the blood model loads (once) on the helper thread too
            task = IDC if slide else run_busy(w, f"Looking at {folder.name} …",
                                              lambda: guess_task(folder, self._blood_model()))
            if task and self.info and task != self.info.task:
                self.folder = None  # the assay change below must not reopen the old folder
                self.select_task(task)
                w.statusBar().showMessage(f"These images look like {self.info.display_name}: the assay was switched. "
                                          "Choose another in the Assay list if they are not.", 10_000)
        if self._shut:
            return
        if self.info is None:
            w.error("No model", "There is no model to classify with.")
            return
        self.close_session()
        self._clear_view(folder)
        try:
            opened = open_session(w, folder, self.model(self.info))
        except SlideTallyError as exc:
            opened = None
            w.error("Cannot open the folder", str(exc))
        if opened is None:
            w.setWindowTitle("SlideTally")
            return
        session, rows = opened
        if self._shut:  # closed while it opened
            session.close()
            return
        self.session, self.folder = session, folder
        # Qt queues the worker thread's signals to the GUI thread; each slot ignores a late
        # signal from an earlier session or worker (`_stale`).
        self.adapter = adapter = SessionAdapter(session)
        adapter.cells_added.connect(self._cells_arrived)
        adapter.cells_changed.connect(self._cells_changed)
        adapter.state_changed.connect(self._state_changed)
        adapter.progress.connect(self._progress)
        adapter.notice.connect(self._notice)
        w.thumbnails.reset(folder, self.info.patch.size)
        w.gallery_model.reset(rows, self.info)
        if folder.is_file():  # a whole slide: its picture under the map from the first tiles called
            self._build_mosaic()
        w.find.setText(self._filters.get(folder, ""))
        self.show_record(session.record())
        w.review.focus_first()
        w.settings.remember_folder(folder)
        w.rebuild_recent()
        if session.altered:  # shown as it is stored, read-only; nothing classified, exported or sent
            w.show_banner(f"⛔ {ALTERED}: {'; '.join(session.altered)}. It is shown read-only; nothing is exported "
                          "or sent to the LIS.", alarm=True)
            w.statusBar().showMessage("This record was altered outside SlideTally: read-only.")
            return
        self._start_worker()

    def _clear_view(self, folder: Path) -> None:
        """Nothing of the previous folder stays on screen while the next one opens: title, banner,
        gallery, panel, map and find box all start empty (the find text is kept per folder)."""
        w = self.w
        if self.folder is not None:
            self._filters[self.folder] = w.find.text()
        self.session = self.folder = None
        w.setWindowTitle(f"SlideTally — {folder.name} — opening…")
        w.banner.setVisible(False)
        w.find.clear()
        w.summary.set_mosaic(None)
        w.gallery_model.reset([], self.info)
        w.records.refresh()

    def _blood_model(self) -> Model | None:
        """The blood model, when installed: its Unfamiliar score tells blood cells from tissue patches."""
        info = next((m for m in self.models if m.task == BLOOD and not m.site), None)
        return self.model(info) if info is not None else None

    def catch_up(self) -> None:
        """Show what another process stored in this session meanwhile (the window came back)."""
        session = self.session
        if session is None or self.is_classifying() or not session.written_elsewhere():
            return
        self.w.gallery_model.reset(session.cells(), self.info)
        self.show_record(session.record())
        self.w.statusBar().showMessage("Updated with what another SlideTally stored in this session.")

    def shutdown(self) -> None:
        """The window closes (or SIGTERM): close the session, and let a folder half opened behind a
        busy dialog (whose event loop ran the close) open nothing and start no classification."""
        self._shut = True
        self.close_session()

    def close_session(self) -> None:
        """Stop any classification, then let go of the session (nothing is lost: it is all stored)."""
        self.stop_worker()
        if self.adapter is not None:
            self.adapter.detach()
            self.adapter = None
        if self.session is not None:
            self.session.close()
            self.session = None
        self.w.undo_stack.clear()

    def rescan(self, check_foreign: bool = True) -> None:
        """Classify the folder again: new and changed files are taken in (open sessions only)."""
        if self.session is not None and not self.is_classifying():
            self.stop_worker()
            self.w.banner.setVisible(False)
            self._start_worker(check_foreign)

    # --- classification off the GUI thread ----------------------------------------------------
    def _start_worker(self, check_foreign: bool = True) -> None:
        w = self.w
        if self._shut:
            return
        self.worker = worker = ClassifyWorker(self.session, check_foreign)
        worker.finished.connect(self._finished)
        worker.failed.connect(self._failed)
        self.classify_thread = start_worker(worker)
        w.show_progress(True)
        w.statusBar().showMessage(f"Scanning {self.folder} …")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel.set()
            self.w.statusBar().showMessage("Cancelling …")

    def stop_worker(self) -> None:
        """Cancel and wait: the worker checks the cancel flag while scanning and after every batch."""
        if self.worker is not None:
            self.worker.cancel.set()
        if self.classify_thread is not None:
            self.classify_thread.quit()
            if not self.classify_thread.wait(30_000):
                log.error("the classification thread did not stop within 30 s")
        self.w.show_progress(False)
        self.worker = None
        self.classify_thread = None

    def is_classifying(self) -> bool:
        return self.classify_thread is not None and self.classify_thread.isRunning()

    def _stale(self) -> bool:
        """True in a slot called by a signal of an adapter or worker that is no longer current."""
        sender = self.sender()
        return sender is not None and sender is not self.adapter and sender is not self.worker

    def _progress(self, p) -> None:
        if not self._stale():
            if p.done == 0 or not self.w.progress.maximum():
                self.w.statusBar().showMessage(f"Classifying {self.folder.name} …")
            self.w.show_rate(p)

    def _cells_arrived(self, cells) -> None:
        if self._stale():
            return
        self.w.gallery_model.upsert(cells)
        now = time.monotonic()
        if now - self._summary_at >= SUMMARY_EVERY_S:
            self._summary_at = now
            self.w.records.refresh()

    def _cells_changed(self, cells) -> None:
        if self._stale():
            return
        self.w.gallery_model.upsert(cells)
        self.w.records.refresh()

    def _state_changed(self, record: SessionRecord) -> None:
        if not self._stale():
            self.show_record(record)

    def show_record(self, record: SessionRecord) -> None:
        """The title bar and the record's actions, from the open session's own record."""
        name = record.specimen_id or (self.folder.name if self.folder else "")
        status = "signed off" if record.signed else ("reopened" if record.state == SessionState.REOPENED else "")
        self.w.setWindowTitle(" — ".join(p for p in ("SlideTally", name, self.folder.name if self.folder else "", status)
                                         if p))
        self.w.records.refresh()

    def _notice(self, text: str) -> None:
        if self._stale():
            return
        self.w.show_banner(f"⚠ {text}")
        log.warning(text)

    def _finished(self, result: ClassifyResult) -> None:
        w = self.w
        if self._stale():
            return
        w.show_progress(False)
        w.records.refresh()
        total = w.gallery_model.rowCount()
        if result.cancelled:
            w.statusBar().showMessage(f"Cancelled: {result.classified} images classified and kept; reopen the folder "
                                      "to go on.")
        elif not result.applied and result.changes.any:
            w.statusBar().showMessage(f"{total} images restored; the folder's changes were not taken in (see the banner).")
        elif not result.applied:
            w.statusBar().showMessage(f"{total} images restored. This session is signed off and read-only.")
        elif result.foreign:  # one story in the banner, the summary and here: the run stopped early
            w.statusBar().showMessage(f"Classification stopped after {result.classified} images: they look foreign "
                                      "to this model. Choose another assay, or classify them anyway.")
        else:
            w.statusBar().showMessage(f"{total} images ready ({result.classified} classified now). Review the Review "
                                      "bin, then sign off.")
        if not w.gallery.selected_rows():
            w.review.focus_first()
        if self.info and self.info.task == IDC:
            self._build_mosaic()
        if result.foreign and w.ask("These images look foreign", result.foreign + "\n\nClassify them anyway?"):
            self.rescan(check_foreign=False)
        elif result.foreign:
            self._notice(f"Classification stopped after {result.classified} images: {result.foreign}. The rest of the "
                         "folder is not classified and not counted; nothing can be signed off until it is.")

    def _failed(self, message: str) -> None:
        if self._stale():
            return
        self.w.show_progress(False)
        self.w.error("Classification stopped",
                     f"Classification stopped: {message}\nEverything classified before this is kept.")

    def _mosaic_ready(self, session, mosaic) -> None:
        if session is self.session:  # not one built for a session closed since
            self.w.summary.set_mosaic(mosaic)
            self.w.records.refresh()

    def _build_mosaic(self) -> None:
        from desktop.ui.mosaic import MosaicJob

        cells = self.w.gallery_model.cells
        job = MosaicJob(self.folder, cells, slide_grid(cells, self.info), self.info.mpp)
        session = self.session
        job.signals.ready.connect(lambda mosaic: self._mosaic_ready(session, mosaic))
        # kept until a later one replaces it and a while after: the pool runs it from Python's reference
        self._mosaic_jobs = [*self._mosaic_jobs[-3:], job]
        self.w.thumbnails.start(job)


def open_session(w: QMainWindow, folder: Path, model: Model) -> tuple[Session, GalleryRows] | None:
    """The folder's (or slide's) session and its gallery rows, read and sorted off the GUI thread; a slide that does
    not record its pixel size asks for it (None: not given)."""
    def opened(mpp: float | None = None) -> tuple[Session, GalleryRows]:
        session = Session.open(folder, model, w.data_root, slide_mpp=mpp)
        return session, GalleryRows.of(session.cells())

    try:
        return run_busy(w, f"Opening {folder.name} …", opened)
    except SlideTallyError as exc:
        if not isinstance(exc.__cause__, ScaleUnknown):
            raise
    from PySide6.QtWidgets import QInputDialog

    mpp, ok = QInputDialog.getDouble(w, "Slide scale", f"{folder.name} does not record its pixel size.\n"
                                     "µm per pixel at full resolution (the scanner's; 0.25 at 40x, 0.5 at 20x):",
                                     0.25, *MPP_RANGE, 4)
    return run_busy(w, f"Opening {folder.name} …", lambda: opened(mpp)) if ok else None
