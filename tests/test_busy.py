"""Slow work on a helper thread while the window keeps answering (ui/busy.py)."""

from __future__ import annotations

import threading
import time

import pytest
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
