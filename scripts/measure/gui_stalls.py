"""How long the GUI thread stops answering (the longest gap between two ticks of a 10 ms timer)
while the real window opens a large folder and classifies it (the gallery scrolling meanwhile),
signs it off, reopens it and opens Verification; and how soon the window shows next to an empty
PySide6 window. Runs each checkout given with --checkout (default: this one) in its own process,
so two builds compare in one run:

    python -m scripts.measure.gui_stalls [FOLDER] --checkout . --checkout /tmp/previous-main

Without FOLDER: 20,000 hard links to the bundled blood samples (--images N for another number).

Offscreen platform; the folder is only read; every session goes to a temporary data folder."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def startup(checkout: Path, mode: str) -> float:
    """Seconds from process start to the first paint of the window: an empty QMainWindow, or SlideTally's as the
    app shows it (desktop.ui.app.show_window: the frame first, the core after the paint)."""
    code = ("import time; t=time.perf_counter()\n"
            "from PySide6.QtCore import QEvent, QObject\n"
            "from PySide6.QtWidgets import QApplication, QMainWindow\napp=QApplication([])\n"
            "class Painted(QObject):\n"
            "    seen = False\n"
            "    def eventFilter(self, obj, event):\n"
            "        Painted.seen |= event.type() == QEvent.Type.Paint\n"
            "        return False\n"
            "watch = Painted(); app.installEventFilter(watch)\n"
            + ("w=QMainWindow(); w.show()\n" if mode == "empty"
               else "from desktop.ui.app import show_window\nw=show_window(app)\n")
            + "while not Painted.seen: app.processEvents()\n"
            "print(time.perf_counter()-t)")
    env = {**os.environ, "PYTHONPATH": str(checkout), "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": tempfile.mkdtemp(), "XDG_DATA_HOME": tempfile.mkdtemp()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=checkout, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def stalls(folder: Path) -> dict[str, float]:
    """In this process (the checkout on PYTHONPATH): the longest GUI-thread gap per step, in ms."""
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox

    from desktop.core.resources import resource
    from desktop.ui.dialogs import IdentityForm
    from desktop.ui.main_window import MainWindow

    app = QApplication([])
    tmp = Path(tempfile.mkdtemp())
    window = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    window.show()
    window.sessions.load_models((resource("models"),))
    QInputDialog.getText = staticmethod(lambda *a, **k: ("Ana", True))
    IdentityForm.ask = classmethod(lambda cls, *a, **k: ("S-1", "", "Ana"))
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.StandardButton.No)  # never "classify anyway"
    QMessageBox.warning = staticmethod(lambda *a, **k: print("warning:", a[1:3], file=sys.stderr))
    clock, gap = QElapsedTimer(), [0]
    last = [0]

    def tick() -> None:
        now = clock.elapsed()
        gap[0] = max(gap[0], now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    clock.start()

    def measure(step) -> float:
        app.processEvents()
        gap[0], last[0] = 0, clock.elapsed()
        step()
        app.processEvents()
        tick()
        return float(gap[0])

    def open_and_classify() -> None:
        window.sessions.open_folder(folder)  # the assay as the folder looks
        scroll = window.gallery.verticalScrollBar()
        while window.sessions.is_classifying():
            app.processEvents()
            scroll.setValue((scroll.value() + 40) % max(scroll.maximum(), 1))
            time.sleep(0.002)

    result = {"open + classify": measure(open_and_classify)}
    session = window.sessions.session
    session.confirm([c.file for c in session.cells() if c.needs_review], "Ana")
    window.sessions.catch_up()
    result["sign-off"] = measure(window.records.sign_off)
    result["signed"] = float(session.signed)
    window.sessions.close_session()
    result["reopen the folder"] = measure(open_and_classify)
    from desktop.ui.lab_tools import VerificationDialog

    result["open Verification"] = measure(lambda: VerificationDialog(window, window.sessions.model(window.sessions.info),
                                                                     tmp / "data").close())
    window.sessions.close_session()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--checkout", type=Path, action="append")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(stalls(args.folder)))
        return
    checkouts = args.checkout or [HERE.parents[2]]
    if args.folder is None:
        args.folder = Path(tempfile.mkdtemp()) / "big"
        args.folder.mkdir()
        samples = sorted((HERE.parents[2] / "resources" / "samples" / "blood").glob("*.jpg"))
        for i in range(args.images):
            (args.folder / f"{i:05d}_{samples[i % len(samples)].name}").hardlink_to(samples[i % len(samples)])
    for checkout in checkouts:
        checkout = checkout.resolve()
        empty = [startup(checkout, "empty") for _ in range(3)]
        app = [startup(checkout, "app") for _ in range(3)]
        env = {**os.environ, "PYTHONPATH": str(checkout), "QT_QPA_PLATFORM": "offscreen"}
        run = subprocess.run([sys.executable, str(HERE), str(args.folder), "--inner"], env=env, cwd=checkout,
                             capture_output=True, text=True)
        gaps = json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else {"error": run.stderr[-500:]}
        print(f"{checkout}: window {min(app):.2f}-{max(app):.2f} s, empty window {min(empty):.2f}-{max(empty):.2f} s "
              f"(ratio of medians {sorted(app)[1] / sorted(empty)[1]:.1f}); longest GUI-thread gap (ms): {gaps}")


if __name__ == "__main__":
    main()
