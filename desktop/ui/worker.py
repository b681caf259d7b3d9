"""Classification off the GUI thread: a QThread runs `Session.classify`; the cells arrive
through the session's events, this worker only says when it has ended."""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, QThread, Signal

from desktop.core.records.session import Session

log = logging.getLogger(__name__)


class ClassifyWorker(QObject):
    finished = Signal(object)  # ClassifyResult
    failed = Signal(str)

    def __init__(self, session: Session, check_foreign: bool = True) -> None:
        super().__init__()
        self.session = session
        self.check_foreign = check_foreign
        self.cancel = threading.Event()

    def run(self) -> None:
        try:
            self.finished.emit(self.session.classify(cancel=self.cancel, check_foreign=self.check_foreign))
        except Exception as exc:  # shown to the technician as a dialog, logged in full
            log.exception("classification failed")
            self.failed.emit(str(exc))


def start_worker(worker: ClassifyWorker) -> QThread:
    thread = QThread()
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    worker.failed.connect(thread.quit)
    thread.start()
    return thread


class TaskWorker(QObject):
    """Runs one blocking core call off the GUI thread (verification, adaptation)."""

    progress = Signal(str, int, int)  # stage, done, total
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, task) -> None:
        super().__init__()
        self.task = task
        self.cancel = threading.Event()

    def run(self) -> None:
        try:
            self.finished.emit(self.task(self.progress.emit, self.cancel))
        except Exception as exc:  # shown to the technician, logged in full
            log.exception("task failed")
            self.failed.emit(str(exc))
