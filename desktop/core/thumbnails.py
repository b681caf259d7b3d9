"""A cell's pixels and its thumbnail, as numpy arrays: the gallery, the large view, the slide
mosaic and the PDF report all read them here, so a tile is cut at the model's patch size
everywhere and a thumbnail is the same picture on screen and on paper."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from desktop.core.inference.contract import IDC_MPP
from desktop.core.inference.imaging import UnreadableImage, load_image
from desktop.core.inference.items import parse_tile_name
from desktop.core.inference.slide import cut_tile
from desktop.core.inference.wsi import is_slide_file, read_slide_tile


@lru_cache(maxsize=2)
def _tissue_image(path: str) -> np.ndarray:
    """A large tissue image, decoded once for all of its tiles' thumbnails."""
    return load_image(Path(path))


@lru_cache(maxsize=8)
def _is_slide(path: str) -> bool:
    return is_slide_file(Path(path))


def load_cell_image(folder: Path, relative: str, *, patch_size: int, mpp: float | None = None) -> np.ndarray:
    """The cell's pixels: a file, or a `patch_size` tile cut from a tissue image or read from a whole
    slide at the model's `mpp` (`name#x<X>_y<Y>`). `folder` may be the session's slide file itself."""
    tile = parse_tile_name(relative)
    if tile is not None:
        x, y = tile.position
        path = Path(folder) if Path(folder).is_file() else Path(folder) / tile.source
        if _is_slide(str(path)):
            return read_slide_tile(path, x, y, patch_size, mpp or IDC_MPP)
        return cut_tile(_tissue_image(str(path)), x, y, patch_size)
    return load_image(Path(folder) / relative)


def unreadable_mark(size: int) -> np.ndarray:
    """A grey square with a red cross: the thumbnail of a file that cannot be shown."""
    grey = np.full((size, size, 3), 200, np.uint8)
    cv2.line(grey, (10, 10), (size - 10, size - 10), (160, 40, 40), 3)
    cv2.line(grey, (size - 10, 10), (10, size - 10), (160, 40, 40), 3)
    return grey


def thumbnail(folder: Path, relative: str, *, patch_size: int, size: int, mpp: float | None = None) -> np.ndarray:
    """The cell's picture fitted in `size` x `size` pixels (its longer side is `size`), RGB uint8."""
    try:
        rgb = load_cell_image(folder, relative, patch_size=patch_size, mpp=mpp)
    except (UnreadableImage, OSError):
        return unreadable_mark(size)
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interpolation)
