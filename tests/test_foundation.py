"""The package's shape: no TensorFlow in the app, no Qt in the core, entry points work."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    return set(out.stdout.split())


def test_app_imports_without_tensorflow():
    modules = _modules_after("import desktop.cli, desktop.ui.app, desktop.ui.main_window, desktop.core.records.session")
    assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in modules)
    assert not any(m.startswith("keras") for m in modules)


def test_core_imports_no_qt():
    code = ("import pkgutil, importlib, desktop.core as c\n"
            "for m in pkgutil.walk_packages(c.__path__, 'desktop.core.'): importlib.import_module(m.name)")
    modules = _modules_after(code)
    assert "desktop.core.inference.pipeline" in modules and "desktop.core.records.session" in modules
    assert not any(m.startswith("PySide6") for m in modules)


def test_cli_help_works():
    out = subprocess.run([sys.executable, "-m", "desktop.cli", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0
    assert "classify" in out.stdout and "bench" in out.stdout


def test_main_window_opens_offscreen(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from desktop.ui.main_window import MainWindow

    window = MainWindow(data_root=tmp_path, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.isVisible()
    assert window.windowTitle().startswith("SlideTally")


def test_qt_callbacks_into_python_keep_reference_counts():
    """PySide6 6.12.0 dropped a reference to None on every Qt -> Python model call, and
    Python 3.11 aborts once None's count reaches zero (the app died mid-classification)."""
    code = (
        "import sys\n"
        "from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, Qt, Signal\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "class M(QAbstractListModel):\n"
        "    def rowCount(self, parent=QModelIndex()): return 1\n"
        "    def data(self, index, role=0): return None\n"
        "class S(QObject):\n"
        "    sig = Signal()\n"
        "m, s = M(), S()\n"
        "s.sig.connect(lambda: None)\n"
        "i = m.index(0, 0)\n"
        "before = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)\n"
        "for _ in range(500): i.data(); s.sig.emit()\n"
        "after = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)\n"
        "print(*[a - b for a, b in zip(after, before)])\n"
    )
    env = {**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-500:]
    deltas = [int(v) for v in out.stdout.split()]
    assert all(abs(d) < 50 for d in deltas), f"reference counts drift by {deltas} over 500 callbacks"
