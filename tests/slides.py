"""Whole-slide images made here: a patient's IDC patches assembled on white at their slide offsets and
written as a tiled pyramidal TIFF (tifffile, JPEG tiles, one level per downsample, resolution tags),
so the true calls of every tile are known. Used by the tests and by scripts/measure/wsi_measure.py."""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np

PATCH_XY = re.compile(r"_x(\d+)_y(\d+)_class(\d)")
PATCH_PX = 50
TILE_PX = 256


def patient_patches(patient_dir: Path, window: tuple[int, int, int] | None = None) -> list[tuple[int, int, int, Path]]:
    """(x, y, class, path) of a patient's patches, x/y on the 50 px grid from 0 (the names' offsets are 1 + 50k);
    with `window` (column, row, n) only the n x n patches from that grid position, x/y from the window's corner."""
    out = []
    for path in sorted(Path(patient_dir).glob("*/*.png")):
        m = PATCH_XY.search(path.name)
        x, y = int(m.group(1)) - 1, int(m.group(2)) - 1
        if window is not None:
            column, row, n = window
            x, y = x - column * PATCH_PX, y - row * PATCH_PX
            if not (0 <= x < n * PATCH_PX and 0 <= y < n * PATCH_PX):
                continue
        out.append((x, y, int(m.group(3)), path))
    return out


def assemble_canvas(patches: list[tuple[int, int, int, Path]]) -> np.ndarray:
    """The patches on white at their offsets (RGB, 1 px = 1 patch pixel)."""
    width = max(x for x, *_ in patches) + PATCH_PX
    height = max(y for _, y, *_ in patches) + PATCH_PX
    canvas = np.full((height, width, 3), 255, np.uint8)
    for x, y, _, path in patches:
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        canvas[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb
    return canvas


def _level_tiles(canvas: np.ndarray, scale: float, shape: tuple[int, int]):
    """Tiles of the canvas shown `scale` level px per canvas px (nearest when enlarging), white-padded."""
    height, width = shape
    if scale < 1:
        canvas = cv2.resize(canvas, (max(1, round(canvas.shape[1] * scale)), max(1, round(canvas.shape[0] * scale))),
                            interpolation=cv2.INTER_AREA)
        scale = 1.0
    rows = np.minimum((np.arange(height) / scale).astype(np.int64), canvas.shape[0] - 1)
    cols = np.minimum((np.arange(width) / scale).astype(np.int64), canvas.shape[1] - 1)
    for top in range(0, height, TILE_PX):
        for left in range(0, width, TILE_PX):
            tile = np.full((TILE_PX, TILE_PX, 3), 255, np.uint8)
            r, c = rows[top:top + TILE_PX], cols[left:left + TILE_PX]
            tile[:len(r), :len(c)] = canvas[r][:, c]
            yield tile


def write_pyramid(path: Path, canvas: np.ndarray, upsample: int, mpp: float | None,
                  downsamples: tuple[int, ...] = (1, 4, 16), quality: int = 90) -> Path:
    """The canvas enlarged `upsample` times as a tiled pyramidal TIFF (levels at `downsamples`); with
    `mpp` (µm per level-0 pixel) the resolution tags say so, without it the slide has no scale."""
    import tifffile

    height, width = canvas.shape[0] * upsample, canvas.shape[1] * upsample
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, d in enumerate(downsamples):
            shape = (math.ceil(height / d), math.ceil(width / d))
            tags = ({"resolution": (1e4 / (mpp * d), 1e4 / (mpp * d)), "resolutionunit": "CENTIMETER"}
                    if mpp else {})
            tif.write(_level_tiles(canvas, upsample / d, shape), shape=(*shape, 3), dtype=np.uint8,
                      tile=(TILE_PX, TILE_PX), compression="jpeg", compressionargs={"level": quality},
                      photometric="rgb", subfiletype=1 if i else 0, metadata=None, **tags)
    return path


def patient_slide(patient_dir: Path, path: Path, upsample: int = 4, mpp: float | None = 1.0,
                  downsamples: tuple[int, ...] = (1, 4, 16), window: tuple[int, int, int] | None = None,
                  ) -> tuple[Path, list[tuple[int, int, int, Path]]]:
    """A patient's slide (or a window of it) at `upsample`x (mpp: µm per slide pixel) and the patches it holds."""
    patches = patient_patches(patient_dir, window)
    return write_pyramid(path, assemble_canvas(patches), upsample, mpp, downsamples), patches
