"""Qt side of the slide heat map: numpy overlay (core) to QImage."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from desktop.core.slide import heat_overlay
from desktop.ui.gallery import to_qimage


def heat_overlay_image(heat: np.ndarray, calls: np.ndarray, mosaic: np.ndarray | None) -> QImage:
    return to_qimage(heat_overlay(heat, mosaic))
