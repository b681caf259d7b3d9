"""numpy RGB to QImage (QtGui only): the PDF outlet and the views share it."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_qimage(rgb: np.ndarray) -> QImage:
    """A copy of an RGB uint8 array as a QImage (the array may be freed afterwards)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
