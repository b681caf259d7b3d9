"""`slidetally`: start the GUI. Heavy imports wait until the window is on screen."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from desktop.ui.main_window import MainWindow

START = time.perf_counter()
log = logging.getLogger("slidetally")


def setup_logging() -> Path | None:
    """The log file in the user data folder (the core's and the window's log); a read-only data
    folder logs to the terminal instead (the window says so when a session cannot be saved)."""
    from desktop.core.logs import log_to_file

    path = log_to_file()
    if path is None:
        logging.basicConfig(level=logging.INFO)
    return path


def install_excepthook(window_getter) -> None:
    """An unexpected error becomes a plain dialog; the traceback goes to the log file only."""
    from PySide6.QtWidgets import QMessageBox

    def hook(kind, value, tb):
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(kind, value, tb)))
        window = window_getter()
        QMessageBox.critical(window, "Something went wrong",
                             f"SlideTally hit an unexpected problem: {value}\n\nYour work is saved. "
                             "Details are in the log file (Help → About).")

    sys.excepthook = hook


USAGE = """usage: slidetally [FOLDER]

Open SlideTally, the CNN pre-classification of blood-cell and breast-tissue images, and
classify FOLDER if one is given. Counts, review and sign-off are in the window; the same
work without a window is slidetally-cli.

options:
  -h, --help  show this help message and exit
  --version   show the program's version number and exit
"""


def answer_without_window(argv: list[str]) -> bool:
    """--help and --version print and return True before any window (or display) is needed."""
    if "-h" in argv[1:2] or "--help" in argv[1:2]:
        print(USAGE, end="")
        return True
    if "--version" in argv[1:2]:
        from desktop import __version__

        print(f"slidetally {__version__}")
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if answer_without_window(argv):
        return 0
    import signal

    # SIGTERM before the window exists: nothing is open or unsaved yet, so leave at once, cleanly.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName("SlideTally")
    app.setApplicationName("SlideTally")
    log_path = setup_logging()
    window = show_window(app)
    install_excepthook(lambda: window)
    folder = Path(argv[1]) if len(argv) > 1 and not argv[1].startswith("-") else None

    closing: list[bool] = []

    def after_paint():
        if closing:  # SIGTERM came first: do not start classifying a window that is closing
            return
        window.complete()  # the core loads here, after the window is on screen
        log.info("window complete after %.2f s (log: %s)", time.perf_counter() - START, log_path)
        window.sessions.load_models()
        if folder is not None:
            window.sessions.open_folder(folder)
        window.replay_early_keys()  # a key typed during the start acts now, as it would have on a complete window
        QTimer.singleShot(500, preload_outlets)

    window.when_painted(after_paint)
    quit_on_terminate(app, window, closing)
    return app.exec()


def show_window(app: QApplication) -> MainWindow:
    """The main window's frame on screen, with Qt alone loaded (MainWindow's two steps); the caller completes it."""
    from PySide6.QtGui import QIcon

    from desktop.core.resources import resource
    from desktop.ui.main_window import MainWindow

    icon = resource("icons", "slidetally.png")
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    window = MainWindow(complete_later=True)
    window.show()
    log.info("window shown after %.2f s", time.perf_counter() - START)
    return window


def preload_outlets() -> None:
    """The export modules (HL7, FHIR with pydantic: about a second) load on a helper thread once the
    window is up, so neither the first paint nor the first sign-off waits for them."""
    import threading

    def load() -> None:
        import desktop.outlets.csv
        import desktop.outlets.lis  # noqa: F401

    threading.Thread(target=load, name="slidetally-preload", daemon=True).start()


def quit_on_terminate(app, window, closing: list[bool]) -> None:
    """SIGTERM (logout, shutdown, `kill`) closes the window normally: classification stopped and
    waited for, settings saved, store closed. The quit is queued, so a SIGTERM that lands before
    the event loop runs still ends it instead of being lost (the app hung)."""
    import signal

    from PySide6.QtCore import QTimer

    def close_all():
        if window.completed:
            window.sessions.shutdown()  # the classifying thread ends before anything is torn down
        for widget in app.topLevelWidgets():
            widget.close()
        app.quit()

    def on_terminate(*_):
        # Python runs this between two bytecodes of whatever the GUI thread is doing (a folder half
        # opened, a thread half started): the close itself waits for the event loop.
        closing.append(True)
        QTimer.singleShot(0, close_all)

    signal.signal(signal.SIGTERM, on_terminate)
    # Python only runs signal handlers between bytecodes: wake the interpreter now and then.
    app._signal_timer = QTimer()
    app._signal_timer.timeout.connect(lambda: None)
    app._signal_timer.start(250)


if __name__ == "__main__":
    raise SystemExit(main())
