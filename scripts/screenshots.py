"""Drive the real main window through its main states and save screenshots.

Run under a virtual display:  xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python -m scripts.screenshots
Small screen:  QT_SCALE_FACTOR=1.5 xvfb-run -s "-screen 0 1366x768x24" .venv/bin/python -m scripts.screenshots --small-screen
Without a display: QT_QPA_PLATFORM=offscreen (for the small screen, offscreen:configfile=F with F the 1366x768 screen
of tests/test_high_dpi.py).
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
OUT = ROOT / "docs" / "screenshots"


def pump(app, seconds):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


def shoot_folder(app, window, folder: Path, name: str, settle: float) -> None:
    """Open a folder, let it classify and its thumbnails arrive, then save the window."""
    window.sessions.open_folder(folder)
    while window.sessions.is_classifying():
        pump(app, 0.1)
    window.thumbnails.wait()
    pump(app, settle)
    window.grab().save(str(OUT / name))


def small_screen(app) -> None:
    """The blood samples on a 1366x768 screen at 1.5x scale (run with QT_SCALE_FACTOR=1.5)."""
    from desktop.ui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp())
    settings = QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(data_root=tmp / "data", settings=settings)
    window.showMaximized()
    window.sessions.load_models()
    shoot_folder(app, window, ROOT / "resources" / "samples" / "blood", "blood-1366x768-at-1.5x.png", 1.5)
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
    window.sessions.load_models()
    pump(app, 0.5)
    window.grab().save(str(OUT / "empty.png"))

    # a larger folder so the progress bar is visible while it runs
    big = tmp / "Smear 2026-11-24"
    big.mkdir()
    for i in range(60):
        for path in sorted((ROOT / "resources" / "samples" / "blood").glob("*.jpg")):
            shutil.copy(path, big / f"{i:02d}_{path.name}")
    window.sessions.open_folder(big)
    pump(app, 0.6)
    window.grab().save(str(OUT / "classifying.png"))
    while window.sessions.is_classifying():
        pump(app, 0.1)

    shoot_folder(app, window, ROOT / "resources" / "samples" / "blood", "blood-results.png", 1.0)
    window.gallery.setCurrentIndex(window.proxy.index(0, 0))
    from desktop.ui.preview import CellViewer

    dialog = CellViewer(window, window.sessions.folder, window.sessions.info, window.proxy, 0,
                        window.review.reclassify, window.review.confirm_files)
    dialog.show()
    pump(app, 0.5)
    dialog.grab().save(str(OUT / "preview.png"))
    dialog.close()
    window.exports.write_pdf(tmp / "report.pdf")
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(tmp / "report.pdf"),
                        str(OUT / "report-page")], check=False)
        for produced in OUT.glob("report-page-*.png"):
            produced.rename(OUT / "report-page1.png")

    shoot_folder(app, window, ROOT / "resources" / "samples" / "breast-idc-9022", "idc-heatmap.png", 3.0)
    window.close()
    print("screenshots in", OUT)


if __name__ == "__main__":
    main()
