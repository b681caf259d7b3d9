"""Measure how long the GUI thread is ever blocked while a large folder classifies and the
gallery scrolls: a 5 ms timer records the longest gap between its ticks.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/gui_latency.py [N_IMAGES]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, QSettings, QTimer
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    t0 = time.perf_counter()
    app = QApplication(sys.argv)
    from desktop.ui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp())
    window = MainWindow(data_root=tmp / "data", settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    window.show()
    app.processEvents()
    shown = time.perf_counter() - t0
    window.sessions.load_models()
    folder = tmp / "big"
    folder.mkdir()
    samples = sorted((ROOT / "resources" / "samples" / "blood").glob("*.jpg"))
    for i in range(n):
        src = samples[i % len(samples)]
        (folder / f"{i:05d}_{src.name}").hardlink_to(src) if hasattr(Path, "hardlink_to") else shutil.copy(src, folder)
    gaps = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    start = time.perf_counter()
    window.sessions.open_folder(folder, guess=False)
    scroll = window.gallery.verticalScrollBar()
    while window.sessions.is_classifying():
        app.processEvents()
        scroll.setValue((scroll.value() + 40) % max(scroll.maximum(), 1))
    elapsed = time.perf_counter() - start
    for _ in range(200):  # scroll through the finished gallery
        scroll.setValue((scroll.value() + 400) % max(scroll.maximum(), 1))
        app.processEvents()
        time.sleep(0.005)
    window.close()
    gaps.sort()
    print(f"window shown {shown:.2f} s after start; {n} images classified in {elapsed:.1f} s ({n / elapsed:.0f}/s) with the GUI")
    print(f"GUI thread gaps: median {gaps[len(gaps) // 2]} ms, 99th pct {gaps[int(len(gaps) * 0.99)]} ms, "
          f"max {gaps[-1]} ms over {len(gaps)} ticks")


if __name__ == "__main__":
    main()
