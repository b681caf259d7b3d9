"""Slides for the IDC assay: patch positions from file names, tiling a large tissue image,
and the heat map reassembled from patch positions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PATCH_XY = re.compile(r"_x(\d+)_y(\d+)")
TILE_SUFFIX = re.compile(r"#x(\d+)_y(\d+)$")
# A tissue image (not a patch) is one at least this many patches wide and high.
TILE_MIN_PATCHES = 4
# The largest slide offset placed on a heat map (the IDC slides reach ~4,000 px); the mosaic
# at 10 px a patch is then at most 6,000 px square.
MAX_SLIDE_PX = 30_000


@dataclass(frozen=True)
class Tile:
    """A patch cut from a large tissue image at native resolution."""

    path: Path
    relative: str
    size: int
    mtime: float
    x: int
    y: int
    width: int
    height: int


def patch_position(relative: str) -> tuple[int, int] | None:
    """(x, y) pixel offset of a patch, from `..._x<X>_y<Y>...` or a tile's `#x<X>_y<Y>`; None for
    none, or for one beyond any slide (a name claiming x=99999999 would make a heat map of terabytes)."""
    match = TILE_SUFFIX.search(relative) or PATCH_XY.search(Path(relative).name)
    if not match:
        return None
    x, y = int(match.group(1)), int(match.group(2))
    return (x, y) if x <= MAX_SLIDE_PX and y <= MAX_SLIDE_PX else None


def is_background(tile: np.ndarray, white_level: int = 220, max_tissue: float = 0.25) -> bool:
    """Mostly white (empty glass) tiles are skipped: less than a quarter of the pixels are tissue."""
    grey = tile.mean(axis=2)
    saturation = tile.max(axis=2).astype(np.int16) - tile.min(axis=2)
    tissue = (grey < white_level) | (saturation > 25)
    return tissue.mean() < max_tissue


def tile_image(rgb: np.ndarray, source, patch: int = 50) -> list[Tile]:
    """Cut an RGB image into patch x patch tiles and keep the ones with tissue."""
    tiles = []
    height, width = rgb.shape[:2]
    for y in range(0, height, patch):
        for x in range(0, width, patch):
            piece = rgb[y:y + patch, x:x + patch]
            if piece.shape[0] < patch // 2 or piece.shape[1] < patch // 2 or is_background(piece):
                continue
            tiles.append(Tile(source.path, f"{source.relative}#x{x}_y{y}", source.size, source.mtime,
                              x, y, piece.shape[1], piece.shape[0]))
    return tiles


def heat_map(positions: list[tuple[int, int]], values: list[float], patch: int = 50) -> np.ndarray:
    """A (rows, cols) array of values at patch positions; NaN where there is no patch."""
    if not positions:
        return np.full((0, 0), np.nan)
    cols = max(x for x, _ in positions) // patch + 1
    rows = max(y for _, y in positions) // patch + 1
    grid = np.full((rows, cols), np.nan, dtype=np.float32)
    for (x, y), v in zip(positions, values):
        grid[y // patch, x // patch] = v
    return grid


def build_mosaic(images: list[tuple[tuple[int, int], np.ndarray]], patch: int = 50, cell_px: int = 10) -> np.ndarray:
    """Reassemble the slide from its patches, each shrunk to cell_px (white where none)."""
    import cv2

    if not images:
        return np.full((cell_px, cell_px, 3), 255, np.uint8)
    cols = max(x for (x, _), _ in images) // patch + 1
    rows = max(y for (_, y), _ in images) // patch + 1
    mosaic = np.full((rows * cell_px, cols * cell_px, 3), 255, np.uint8)
    for (x, y), rgb in images:
        h = max(1, round(rgb.shape[0] * cell_px / patch))
        w = max(1, round(rgb.shape[1] * cell_px / patch))
        r, c = (y // patch) * cell_px, (x // patch) * cell_px
        mosaic[r:r + h, c:c + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)[: cell_px, : cell_px]
    return mosaic


# Okabe–Ito colours (safe for the common colour-vision deficiencies), readable on pink H&E.
CALL_COLOURS = {1.0: ((213, 94, 0), 0.70), 0.0: ((0, 114, 178), 0.30), 2.0: ((240, 228, 66), 0.80)}
CALL_LEGEND = (("IDC (final call)", 1.0), ("no IDC", 0.0), ("awaiting review", 2.0))


def call_overlay(calls: np.ndarray, mosaic: np.ndarray | None = None, cell_px: int = 10) -> np.ndarray:
    """The slide's final calls painted over its mosaic: 1 IDC, 0 not, 2 awaiting review, NaN no patch."""
    import cv2

    rows, cols = calls.shape
    size = (cols * cell_px, rows * cell_px)
    base = mosaic if mosaic is not None and mosaic.shape[:2] == (size[1], size[0]) else None
    if base is None:
        base = np.full((size[1], size[0], 3), 255, np.uint8)
    grid = cv2.resize(np.nan_to_num(calls, nan=-1.0).astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
    out = base.astype(np.float32)
    for value, (colour, alpha) in CALL_COLOURS.items():
        where = grid == value
        out[where] = out[where] * (1 - alpha) + np.array(colour, np.float32) * alpha
    return out.round().astype(np.uint8)
