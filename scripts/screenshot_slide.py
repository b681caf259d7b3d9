"""A whole-slide image in the main window with its IDC map: docs/screenshots/idc-slide.png.

The slide is train patient 8917's patches assembled at 16x (0.25 µm/px, as a 40x scan; tests/slides.py).
    QT_QPA_PLATFORM=offscreen PYTHONPATH=$PWD .venv/bin/python -m scripts.screenshot_slide
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots" / "idc-slide.png"
PATIENT = ROOT.parent / "shared" / "data" / "idc" / "8917"


def pump(app: QApplication, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    from desktop.ui.main_window import MainWindow
    from tests.slides import patient_slide

    tmp = Path(tempfile.mkdtemp())
    slide, _ = patient_slide(PATIENT, tmp / "S26-0412 breast core.tif", upsample=16, mpp=0.25)
    app = QApplication.instance() or QApplication(sys.argv)
    window = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 860)
    window.show()
    window.sessions.load_models()
    window.sessions.open_folder(slide)
    while window.sessions.is_classifying():
        pump(app, 0.1)
    window.thumbnails.wait()
    while window.summary.mosaic is None:
        pump(app, 0.1)
    pump(app, 1.0)
    window.grab().save(str(OUT))
    window.close()
    print(OUT)


if __name__ == "__main__":
    main()
