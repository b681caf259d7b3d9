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
    modules = _modules_after("import desktop.cli, desktop.ui.app, desktop.ui.main_window, desktop.core.analysis")
    assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in modules)
    assert not any(m.startswith("keras") for m in modules)


def test_core_imports_no_qt():
    code = ("import pkgutil, importlib, desktop.core as c\n"
            "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('desktop.core.' + m.name)")
    modules = _modules_after(code)
    assert "desktop.core.pipeline" in modules
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
