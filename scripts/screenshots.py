"""Drive the real main window through its main states and save screenshots.

Run under a virtual display:  xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshots.py
Small screen:  QT_SCALE_FACTOR=1.5 xvfb-run -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshots.py --small-screen
Writes docs/screenshots/{empty,classifying,blood-results,preview,idc-heatmap}.png and report-page1.png (needs pdftoppm).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"


def pump(app, seconds):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


def small_screen(app) -> None:
    """The blood samples on a 1366x768 screen at 1.5x scale (run with QT_SCALE_FACTOR=1.5)."""
    from desktop.ui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp())
    settings = QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(data_root=tmp / "data", settings=settings)
    window.showMaximized()
    window.load_models()
    window.open_folder(ROOT / "resources" / "samples" / "blood")
    while window.is_classifying():
        pump(app, 0.1)
    window.thumbnails.wait()
    pump(app, 1.5)
    window.grab().save(str(OUT / "blood-1366x768-at-1.5x.png"))
    window.close()


def main() -> None:
    from desktop.ui.main_window import MainWindow

    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv)
    if "--small-screen" in sys.argv:
        small_screen(app)
        return
    tmp = Path(tempfile.mkdtemp())
    window = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 860)
    window.show()
    window.load_models()
    pump(app, 0.5)
    window.grab().save(str(OUT / "empty.png"))

    # a larger folder so the progress bar is visible while it runs
    big = tmp / "Smear 2026-11-24"
    big.mkdir()
    for i in range(60):
        for path in sorted((ROOT / "resources" / "samples" / "blood").glob("*.jpg")):
            shutil.copy(path, big / f"{i:02d}_{path.name}")
    window.open_folder(big)
    pump(app, 0.6)
    window.grab().save(str(OUT / "classifying.png"))
    while window.is_classifying():
        pump(app, 0.1)

    window.open_folder(ROOT / "resources" / "samples" / "blood")
    while window.is_classifying():
        pump(app, 0.1)
    window.thumbnails.wait()
    pump(app, 1.0)
    window.grab().save(str(OUT / "blood-results.png"))
    window.gallery.setCurrentIndex(window.proxy.index(0, 0))
    from desktop.ui.preview import CellViewer

    dialog = CellViewer(window, window.folder, window.info, window.proxy, 0, window.reclassify, window.confirm_files)
    dialog.show()
    pump(app, 0.5)
    dialog.grab().save(str(OUT / "preview.png"))
    dialog.close()
    window.write_pdf(tmp / "report.pdf")
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(tmp / "report.pdf"),
                        str(OUT / "report-page")], check=False)
        for produced in OUT.glob("report-page-*.png"):
            produced.rename(OUT / "report-page1.png")

    window.open_folder(ROOT / "resources" / "samples" / "breast-idc-9022")
    while window.is_classifying():
        pump(app, 0.1)
    window.thumbnails.wait()
    pump(app, 3.0)
    window.grab().save(str(OUT / "idc-heatmap.png"))
    window.close()
    print("screenshots in", OUT)


if __name__ == "__main__":
    main()
