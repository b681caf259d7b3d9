"""Build the slide mosaic (patches shrunk and placed by x/y) off the GUI thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Signal

from desktop.core.imaging import UnreadableImage
from desktop.core.slide import build_mosaic, patch_position
from desktop.ui.gallery import load_cell_image


class _Signals(QObject):
    ready = Signal(np.ndarray)


class MosaicJob(QRunnable):
    def __init__(self, folder: Path, cells):
        super().__init__()
        self.folder = folder
        self.cells = cells
        self.signals = _Signals()
        self.setAutoDelete(False)

    def run(self) -> None:
        images = []
        for c in self.cells:
            position = (c.x, c.y) if c.x is not None else patch_position(c.file)
            if position is None:
                continue
            try:
                images.append((position, load_cell_image(self.folder, c.file)))
            except (UnreadableImage, OSError):
                continue
        if images:
            self.signals.ready.emit(build_mosaic(images))
