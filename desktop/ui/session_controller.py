"""The session the window shows: the models and the assay in use, opening and closing a folder's
session, and its classification off the GUI thread. What it opens, loads and receives goes into the
AppState (the session's events arrive through one SessionAdapter); the views follow the state."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog

from desktop.core.errors import SlideTallyError
from desktop.core.inference.folder import guess_task
from desktop.core.inference.model import Model, discover_models
from desktop.core.inference.model_info import BLOOD, IDC, MPP_RANGE, ModelInfo
from desktop.core.inference.wsi import SLIDE_FILTER, ScaleUnknown
from desktop.core.records.cell_list import SortedCells
from desktop.core.records.integrity import ALTERED
from desktop.core.records.session import ClassifyResult, Session, why_not_openable
from desktop.core.report.assay_report import percent_text
from desktop.core.report.summary import slide_grid
from desktop.ui.app_state import AppState
from desktop.ui.feedback import Feedback
from desktop.ui.panes import Panes
from desktop.ui.session_adapter import SessionAdapter
from desktop.ui.settings import WindowSettings
from desktop.ui.worker import ClassifyWorker, start_worker

log = logging.getLogger(__name__)


class SessionController(QObject):
    """Holds the open Session (or none) and everything that follows its life. A QObject of the GUI
    thread, so the worker thread's signals reach its slots queued, on this thread."""

    def __init__(self, state: AppState, panes: Panes, feedback: Feedback, settings: WindowSettings,
                 data_root: Path) -> None:
        super().__init__(feedback.parent)
        self.state, self.panes, self.feedback, self.settings, self.data_root = state, panes, feedback, settings, data_root
        self.adapter: SessionAdapter | None = None
        self.worker: ClassifyWorker | None = None
        self.classify_thread = None
        self.model_folders: tuple[Path, ...] = ()
        self._loaded: dict[Path, Model] = {}  # ONNX Runtime sessions, loaded once per model file
        self._mosaic_jobs: list = []
        self._filters: dict[Path, str] = {}  # the find box's text per folder, while the app runs
        self._shut = False  # the window is closing: nothing new is opened or started
        panes.assay.currentIndexChanged.connect(self.assay_changed)

    # the state's, named as callers (and the tests) know them
    @property
    def models(self) -> list[ModelInfo]:
        return self.state.models

    @property
    def info(self) -> ModelInfo | None:
        return self.state.info

    @property
    def session(self) -> Session | None:
        return self.state.session

    @property
    def folder(self) -> Path | None:
        return self.state.folder

    # --- models and the assay -----------------------------------------------------------------
    def load_models(self, folders: tuple[Path, ...] = ()) -> None:
        self.model_folders = tuple(folders)
        models, problems = discover_models(*folders)
        self.state.set_models(models)
        assay = self.panes.assay
        assay.blockSignals(True)
        assay.clear()
        for info in models:
            acc = f" — {info.accuracy_label} {percent_text(info.accuracy)}" if info.accuracy is not None else ""
            assay.addItem(f"{info.display_name} v{info.version}{acc}", info.key)
        assay.blockSignals(False)
        # the assay in use stays in use when the list is reloaded (a site model was installed, say)
        wanted = self.info.key if self.info is not None else self.settings.assay
        index = max(0, assay.findData(wanted)) if wanted else 0
        assay.setCurrentIndex(index)
        self.state.set_model(models[index] if models else None)
        for problem in problems:
            log.warning("skipped model: %s", problem)
        if problems:
            self.feedback.error("Some model files were skipped", "\n".join(problems))
        if not models:
            self.feedback.error("No model found", "No usable model was found in resources/models or the user models "
                                "folder.")

    def select_task(self, task: str) -> None:
        for i, info in enumerate(self.models):
            if info.task == task:
                self.panes.assay.setCurrentIndex(i)
                return

    def assay_changed(self, index: int) -> None:
        if index < 0 or index >= len(self.models):
            return
        info = self.models[index]
        switching = self.folder is not None and self.info is not None and info.key != self.info.key
        if switching and not self._switch_agreed(self.folder, info):
            assay = self.panes.assay
            assay.blockSignals(True)
            assay.setCurrentIndex(assay.findData(self.info.key))
            assay.blockSignals(False)
            return
        self.settings.assay = info.key
        self.state.set_model(info)
        if self.folder is not None:
            self.open_folder(self.folder, guess=False)

    def _switch_agreed(self, folder: Path, info: ModelInfo) -> bool:
        """The open folder is classified with another model only when the technician says so (and is told when its
        images look like another assay's)."""
        guess = self.feedback.busy(f"Looking at {folder.name} …", lambda: guess_task(folder, self._blood_model()))
        other = next((m.display_name for m in self.models if m.task == guess), "another assay")
        warning = (f"\n\nThese images look like images for {other}, not for {info.display_name}."
                   if guess and guess != info.task else "")
        return self.feedback.ask("Change the assay?", f"Classify the open folder “{folder.name}” with "
                                 f"{info.display_name}?{warning}\n\nIts session with {self.info.display_name} is kept "
                                 "and comes back when you switch back.")

    def model(self, info: ModelInfo) -> Model:
        if info.path not in self._loaded:  # the whole graph serves: its split would pause the window
            self._loaded[info.path] = Model(info.path, split_front_end=False)
        return self._loaded[info.path]

    # --- the folder's session -----------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.feedback.parent, "Open a folder of images",
                                                  self.settings.last_folder)
        if folder:
            self.open_folder(Path(folder))

    def choose_slide(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.feedback.parent, "Open a whole-slide image",
                                              self.settings.last_folder, SLIDE_FILTER)
        if path:
            self.open_folder(Path(path))

    def open_folder(self, folder: Path | str, guess: bool = True) -> None:
        folder = Path(folder)
        problem = why_not_openable(folder)
        if problem:
            self.feedback.error("Cannot open folder", problem)
            return
        if guess:
            self._switch_to_guessed_assay(folder)
        if self._shut:
            return
        if self.info is None:
            self.feedback.error("No model", "There is no model to classify with.")
            return
        if self.folder is not None:  # the find box's text is kept per folder
            self._filters[self.folder] = self.panes.find.text()
        self.close_session()
        self._clear_view(folder)
        try:
            opened = open_session(self.feedback, folder, self.model(self.info), self.data_root)
        except SlideTallyError as exc:
            opened = None
            self.feedback.error("Cannot open the folder", str(exc))
        if opened is None:  # nothing opened: the "opening…" title goes (the state is already closed)
            self.feedback.parent.setWindowTitle("SlideTally")
            return
        session, cells = opened
        if self._shut:  # closed while it opened
            session.close()
            return
        self._follow(session)
        self.panes.thumbnails.reset(folder, self.info.patch.size)
        self.panes.find.setText(self._filters.get(folder, ""))
        self.settings.remember_folder(folder)
        self.state.open(session, folder, cells)
        if folder.is_file():  # a whole slide: its picture under the map from the first tiles called
            self._build_mosaic()
        if session.altered:  # shown as it is stored, read-only; nothing classified, exported or sent
            self.feedback.banner(f"⛔ {ALTERED}: {'; '.join(session.altered)}. It is shown read-only; nothing is "
                                 "exported or sent to the LIS.", alarm=True)
            self.feedback.status("This record was altered outside SlideTally: read-only.")
            return
        self._start_worker()

    def _switch_to_guessed_assay(self, folder: Path) -> None:
        """A folder (or slide) that looks like another assay's switches to it, and the status line says so."""
        # the blood model loads (once) on the helper thread too
        task = IDC if folder.is_file() else self.feedback.busy(f"Looking at {folder.name} …",
                                                               lambda: guess_task(folder, self._blood_model()))
        if task and self.info and task != self.info.task:
            self.state.folder = None  # the assay change below must not reopen the old folder
            self.select_task(task)
            self.feedback.status(f"These images look like {self.info.display_name}: the assay was switched. Choose "
                                 "another in the Assay list if they are not.", 10_000)

    def _follow(self, session: Session) -> None:
        """The session's events, through one adapter. Qt queues the worker thread's signals to the GUI thread; each
        slot ignores a late signal from an earlier session or worker (`_stale`)."""
        self.adapter = adapter = SessionAdapter(session)
        adapter.cells_added.connect(self._cells_arrived)
        adapter.cells_changed.connect(self._cells_changed)
        adapter.state_changed.connect(self._state_changed)
        adapter.progress.connect(self._progress)
        adapter.notice.connect(self._notice)

    def _clear_view(self, folder: Path) -> None:
        """Nothing of the previous folder stays on screen while the next one opens: title, banner,
        gallery, panel, map and find box all start empty (the find text is kept per folder)."""
        self.state.close()
        self.feedback.parent.setWindowTitle(f"SlideTally — {folder.name} — opening…")
        self.feedback.hide_banner()
        self.panes.find.clear()
        self.panes.summary.set_mosaic(None)

    def _blood_model(self) -> Model | None:
        """The blood model, when installed: its Unfamiliar score tells blood cells from tissue patches."""
        info = next((m for m in self.models if m.task == BLOOD and not m.site), None)
        return self.model(info) if info is not None else None

    def catch_up(self) -> None:
        """Show what another process stored in this session meanwhile (the window came back)."""
        session = self.session
        if session is None or self.is_classifying() or not session.written_elsewhere():
            return
        self.state.reload()
        self.feedback.status("Updated with what another SlideTally stored in this session.")

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
            self.state.close()

    def rescan(self, check_foreign: bool = True) -> None:
        """Classify the folder again: new and changed files are taken in (open sessions only)."""
        if self.session is not None and not self.is_classifying():
            self.stop_worker()
            self.feedback.hide_banner()
            self._start_worker(check_foreign)

    # --- classification off the GUI thread ----------------------------------------------------
    def _start_worker(self, check_foreign: bool = True) -> None:
        if self._shut:
            return
        self.worker = worker = ClassifyWorker(self.session, check_foreign)
        worker.finished.connect(self._finished)
        worker.failed.connect(self._failed)
        self.classify_thread = start_worker(worker)
        self.feedback.progress(True)
        self.state.set_classifying(True)
        self.feedback.status(f"Scanning {self.folder} …")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel.set()
            self.feedback.status("Cancelling …")

    def stop_worker(self) -> None:
        """Cancel and wait: the worker checks the cancel flag while scanning and after every batch."""
        if self.worker is not None:
            self.worker.cancel.set()
        if self.classify_thread is not None:
            self.classify_thread.quit()
            if not self.classify_thread.wait(30_000):
                log.error("the classification thread did not stop within 30 s")
        self.worker = None
        self.classify_thread = None
        self._ended()

    def _ended(self) -> None:
        self.feedback.progress(False)
        if self.state.classifying:
            self.state.set_classifying(False)

    def is_classifying(self) -> bool:
        return self.classify_thread is not None and self.classify_thread.isRunning()

    def _stale(self) -> bool:
        """True in a slot called by a signal of an adapter or worker that is no longer current."""
        sender = self.sender()
        return sender is not None and sender is not self.adapter and sender is not self.worker

    def _progress(self, p) -> None:
        if not self._stale():
            if p.done == 0 or not self.feedback.progress_started():
                self.feedback.status(f"Classifying {self.folder.name} …")
            self.feedback.rate(p)

    def _cells_arrived(self, cells) -> None:
        if not self._stale():
            self.state.update_cells(cells, arriving=True)

    def _cells_changed(self, cells) -> None:
        if not self._stale():
            self.state.update_cells(cells, arriving=False)

    def _state_changed(self, record) -> None:
        if not self._stale():
            self.state.record_stored(record)

    def _notice(self, text: str) -> None:
        if self._stale():
            return
        self.feedback.banner(f"⚠ {text}")
        log.warning(text)

    def _finished(self, result: ClassifyResult) -> None:
        if self._stale():
            return
        self._ended()
        self.feedback.status(finished_message(result, len(self.state.cells)))
        if self.info and self.info.task == IDC:
            self._build_mosaic()
        if result.foreign and self.feedback.ask("These images look foreign", result.foreign + "\n\nClassify them anyway?"):
            self.rescan(check_foreign=False)
        elif result.foreign:
            self._notice(f"Classification stopped after {result.classified} images: {result.foreign}. The rest of the "
                         "folder is not classified and not counted; nothing can be signed off until it is.")

    def _failed(self, message: str) -> None:
        if self._stale():
            return
        self._ended()
        self.feedback.error("Classification stopped",
                            f"Classification stopped: {message}\nEverything classified before this is kept.")

    def _mosaic_ready(self, session, mosaic) -> None:
        if session is self.session:  # not one built for a session closed since
            self.panes.summary.set_mosaic(mosaic)

    def _build_mosaic(self) -> None:
        from desktop.ui.mosaic import MosaicJob

        cells = self.state.cells.cells
        job = MosaicJob(self.folder, cells, slide_grid(cells, self.info), self.info.mpp)
        session = self.session
        job.signals.ready.connect(lambda mosaic: self._mosaic_ready(session, mosaic))
        # kept until a later one replaces it and a while after: the pool runs it from Python's reference
        self._mosaic_jobs = [*self._mosaic_jobs[-3:], job]
        self.panes.thumbnails.start(job)


def finished_message(result: ClassifyResult, total: int) -> str:
    """The status line when a classification ends: one story with the banner and the summary."""
    if result.cancelled:
        return f"Cancelled: {result.classified} images classified and kept; reopen the folder to go on."
    if not result.applied and result.changes.any:
        return f"{total} images restored; the folder's changes were not taken in (see the banner)."
    if not result.applied:
        return f"{total} images restored. This session is signed off and read-only."
    if result.foreign:  # the run stopped early
        return (f"Classification stopped after {result.classified} images: they look foreign to this model. Choose "
                "another assay, or classify them anyway.")
    return f"{total} images ready ({result.classified} classified now). Review the Review bin, then sign off."


def open_session(feedback: Feedback, folder: Path, model: Model, data_root: Path) -> tuple[Session, SortedCells] | None:
    """The folder's (or slide's) session and its cells, read and sorted off the GUI thread; a slide that does not
    record its pixel size asks for it (None: not given)."""
    def opened(mpp: float | None = None) -> tuple[Session, SortedCells]:
        session = Session.open(folder, model, data_root, slide_mpp=mpp)
        return session, SortedCells.of(session.cells())

    try:
        return feedback.busy(f"Opening {folder.name} …", opened)
    except SlideTallyError as exc:
        if not isinstance(exc.__cause__, ScaleUnknown):
            raise
    from PySide6.QtWidgets import QInputDialog

    mpp, ok = QInputDialog.getDouble(feedback.parent, "Slide scale", f"{folder.name} does not record its pixel size.\n"
                                     "µm per pixel at full resolution (the scanner's; 0.25 at 40x, 0.5 at 20x):",
                                     0.25, *MPP_RANGE, 4)
    return feedback.busy(f"Opening {folder.name} …", lambda: opened(mpp)) if ok else None
