"""The window is painted before the core loads (issue 40: start-up within 1.5x an empty PySide6 window). The time
itself is a benchmark (scripts/measure/gui_stalls.py); these tests pin what makes it fast, and that the window the app
completes after its first paint is the whole window."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "cv2", "onnxruntime", "PIL", "openslide", "desktop.core.inference", "desktop.core.records",
         "desktop.core.report", "desktop.ui.gallery", "desktop.ui.session_controller")


def test_the_first_paint_loads_qt_alone(tmp_path):
    code = ("from PySide6.QtCore import QEvent, QObject\n"
            "from PySide6.QtWidgets import QApplication\n"
            "import sys\n"
            "app = QApplication([])\n"
            "painted = []\n"
            "class Watch(QObject):\n"
            "    def eventFilter(self, obj, event):\n"
            "        if event.type() == QEvent.Type.Paint and not painted:\n"
            "            painted.append(sorted(sys.modules))\n"
            "        return False\n"
            "watch = Watch(); app.installEventFilter(watch)\n"
            "from desktop.ui.app import show_window\n"
            "window = show_window(app)\n"
            "while not painted: app.processEvents()\n"
            "print('\\n'.join(painted[0]))\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen",
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(out.stdout.split())
    assert "desktop.ui.main_window" in loaded
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY or m.startswith(HEAVY)], \
        "the first paint waited for the core"


def test_the_app_completes_the_window_after_its_first_paint(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from desktop.ui.main_window import MainWindow

    window = MainWindow(data_root=tmp_path / "data", complete_later=True,
                        settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    assert not window.completed and not hasattr(window, "gallery")
    window.when_painted(window.complete)
    window.show()
    qtbot.waitUntil(lambda: window.completed)
    assert window.menuBar().actions() and window.gallery.isVisible() and window.bins.isVisible()
    window.when_painted(lambda: window.setWindowTitle("painted again"))  # after the first paint: runs at once
    qtbot.waitUntil(lambda: window.windowTitle() == "painted again")


def test_a_window_closed_while_starting_closes_cleanly(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from desktop.ui.main_window import MainWindow

    window = MainWindow(data_root=tmp_path / "data", complete_later=True,
                        settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    assert window.close()


def test_keys_typed_before_the_window_is_complete_act_once_it_is(qtbot, tmp_path, monkeypatch):
    """The window is painted before its shortcuts exist: a key pressed in between is held and replayed, never lost
    (Ctrl+O opens the folder dialog; Ctrl+Q then closes the window)."""
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtWidgets import QFileDialog

    from desktop.ui.main_window import MainWindow

    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: asked.append(a) or ""))
    window = MainWindow(data_root=tmp_path / "data", complete_later=True,
                        settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.early_keys is not None)  # held from the first paint on
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)  # the frame: no shortcut yet
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert asked == [] and window.isVisible()
    window.complete()
    window.replay_early_keys()
    assert len(asked) == 1  # Ctrl+O: the folder dialog
    qtbot.waitUntil(lambda: not window.isVisible())  # Ctrl+Q: closed


def test_a_window_saved_tiny_opens_at_a_usable_size(qtbot, tmp_path):
    """Found on a fresh-clone run: a geometry saved on a 640x480 virtual screen (552x238) opened that small on a
    large screen. A saved window now opens at least 900x560, or the screen's size where it is smaller."""
    from PySide6.QtCore import QSettings

    from desktop.ui.main_window import MainWindow

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    first = MainWindow(data_root=tmp_path / "data", settings=settings)
    qtbot.addWidget(first)
    first.resize(552, 238)
    first.close()  # saves its geometry
    again = MainWindow(data_root=tmp_path / "data", settings=settings)
    qtbot.addWidget(again)
    available = again.screen().availableGeometry()
    assert again.width() >= min(900, available.width()) and again.height() >= min(560, available.height() - 30)
