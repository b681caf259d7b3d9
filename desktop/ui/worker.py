"""Classification off the GUI thread: a QThread runs the core pipeline and reports progress."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal

from desktop.core.analysis import Analysis
from desktop.core.model import Model
from desktop.core.pipeline import Progress

log = logging.getLogger(__name__)


class ClassifyWorker(QObject):
    """Plans and classifies a folder with its own store connection (SQLite WAL shares the file)."""

    planned = Signal(int, int)  # to classify, already known
    progress = Signal(int, int, float, float)  # done, total, images/s, eta seconds
    finished = Signal(int, bool)  # classified, cancelled
    failed = Signal(str)

    def __init__(self, folder: Path, model_path: Path, data_root: Path):
        super().__init__()
        self.folder, self.model_path, self.data_root = folder, model_path, data_root
        self.cancel = threading.Event()

    def run(self) -> None:
        analysis = None
        try:
            model = Model(self.model_path)
            analysis = Analysis(self.folder, model, self.data_root)
            todo = analysis.plan()
            self.planned.emit(len(todo), len(analysis.items) - len(todo))

            def report(p: Progress) -> None:
                self.progress.emit(p.done, p.total, p.images_per_s, p.eta_s if p.eta_s != float("inf") else -1.0)

            done = analysis.run(todo, report, self.cancel) if todo else 0
            self.finished.emit(done, self.cancel.is_set())
        except Exception as exc:  # noqa: BLE001 - shown to the technician as a dialog, logged in full
            log.exception("classification failed")
            self.failed.emit(str(exc))
        finally:
            if analysis is not None:
                analysis.store.close()


def start_worker(worker: ClassifyWorker) -> QThread:
    thread = QThread()
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    worker.failed.connect(thread.quit)
    thread.start()
    return thread
