"""Build the slide mosaic (patches shrunk and placed by x/y) off the GUI thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRunnable, Signal

from desktop.core.inference.imaging import UnreadableImage
from desktop.core.inference.slide import PatchGrid, build_mosaic
from desktop.core.inference.wsi import SlideError, slide_mosaic
from desktop.core.report.summary import placed_cells
from desktop.core.thumbnails import load_cell_image


class _Signals(QObject):
    ready = Signal(np.ndarray)


class MosaicJob(QRunnable):
    def __init__(self, folder: Path, cells, grid: PatchGrid, mpp: float | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.mpp = mpp  # a whole slide's session: the model's µm per pixel, for the slide's own overview
        self.cells = cells
        self.grid = grid  # the slide's grid (summary.slide_grid), so the mosaic lies under the maps
        self.signals = _Signals()
        self.setAutoDelete(False)

    def run(self) -> None:
        if Path(self.folder).is_file():  # one whole slide: all of its overview, glass and all, under the maps
            try:
                self.signals.ready.emit(slide_mosaic(Path(self.folder), self.grid, None, self.mpp))
            except (SlideError, RuntimeError):  # unreadable, or the window closed meanwhile
                pass
            return
        images = []
        for c, offset in placed_cells(self.cells):
            try:
                images.append((offset, load_cell_image(self.folder, c.file, patch_size=self.grid.size)))
            except (UnreadableImage, OSError):
                continue
        if images:
            mosaic = build_mosaic(images, self.grid)
            try:
                self.signals.ready.emit(mosaic)
            except RuntimeError:  # the window closed the session meanwhile: nobody waits for this mosaic
                pass
