"""Slow work on a helper thread while the window keeps answering (ui/busy.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QProgressDialog

from desktop.ui.busy import SHOW_AFTER_S, run_busy


def test_the_work_runs_off_the_gui_thread_and_its_result_comes_back(qtbot):
    threads = []
    assert run_busy(None, "Working …", lambda: threads.append(threading.current_thread()) or 42) == 42
    assert threads[0] is not threading.main_thread()


def test_the_works_exception_is_raised_in_the_callers_thread(qtbot):
    def fail():
        raise ValueError("the folder vanished")

    with pytest.raises(ValueError, match="vanished"):
        run_busy(None, "Working …", fail)


def test_timers_fire_and_a_dialog_shows_while_the_work_lasts(qtbot):
    fired, dialogs = [], []
    QTimer.singleShot(20, lambda: fired.append(True))
    QTimer.singleShot(int(SHOW_AFTER_S * 1000) + 200, lambda: dialogs.extend(
        w for w in qtbot_widgets() if isinstance(w, QProgressDialog) and w.isVisible()))
    run_busy(None, "Working …", lambda: time.sleep(SHOW_AFTER_S + 0.5))
    assert fired and dialogs and dialogs[0].labelText() == "Working …"
    qtbot.waitUntil(lambda: not any(isinstance(w, QProgressDialog) and w.isVisible() for w in qtbot_widgets()))


def qtbot_widgets():
    from PySide6.QtWidgets import QApplication

    return QApplication.topLevelWidgets()


def test_quitting_while_the_work_runs_waits_for_it_without_spinning(tmp_path):
    """Once the application quits, Qt's event loops return at once: waiting in one must not become a
    loop that burns a core (it did) while the work finishes."""
    script = tmp_path / "quit.py"
    script.write_text(
        "import os, time\n"
        "from PySide6.QtCore import QTimer\nfrom PySide6.QtWidgets import QApplication\n"
        "from desktop.ui.busy import run_busy\n"
        "app = QApplication([])\nout = {}\n"
        "def work():\n"
        "    QTimer.singleShot(50, app.quit)\n"
        "    t = os.times(); before = t.user + t.system\n"
        "    out['result'] = run_busy(None, 'Working', lambda: time.sleep(1.0) or 'done')\n"
        "    t = os.times(); out['cpu'] = t.user + t.system - before\n"
        "QTimer.singleShot(0, work)\napp.exec()\nprint(out['result'], out['cpu'])\n")
    run = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)})
    result, cpu = run.stdout.split()
    assert result == "done"
    assert float(cpu) < 0.5, f"{cpu} s of CPU while waiting 1 s for a sleeping helper"
