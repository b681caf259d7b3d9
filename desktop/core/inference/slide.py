"""Slides for the IDC assay: patch positions from file names, tiling a large tissue image,
and the heat map reassembled from patch positions."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from desktop.core.inference.colour_guard import tissue_share
from desktop.core.inference.imaging import InputSpec, prepare
from desktop.core.inference.items import Item, Position, Sources, parse_tile_name, tile_name
from desktop.core.inference.scan import SourceFile

PATCH_XY = re.compile(r"_x(\d+)_y(\d+)")
# A tissue image (not a patch) is one at least this many patches wide and high.
TILE_MIN_PATCHES = 4
# The largest slide offset placed on a heat map (the IDC slides reach ~4,000 px); the mosaic
# at 10 px a patch is then at most 6,000 px square.
MAX_SLIDE_PX = 30_000


@dataclass(frozen=True)
class PatchGrid:
    """Where a patch model's patches lie on the slide: squares of `size` px, `stride` px apart,
    column 0 / row 0 at the slide offset `origin`."""

    size: int
    stride: int
    origin: tuple[int, int] = (0, 0)

    def place(self, offset: tuple[int, int]) -> tuple[int, int]:
        """(column, row) of the patch at a slide offset: the one place offsets become grid positions."""
        return (offset[0] - self.origin[0]) // self.stride, (offset[1] - self.origin[1]) // self.stride

    def offset(self, column: int, row: int) -> tuple[int, int]:
        """The slide offset of a grid position's top-left pixel."""
        return self.origin[0] + column * self.stride, self.origin[1] + row * self.stride

    def fitted(self, offsets: list[tuple[int, int]]) -> PatchGrid:
        """The same grid with column 0 / row 0 at the top-left patch, so a slide's map starts at its tissue."""
        if not offsets:
            return self
        return replace(self, origin=(min(x for x, _ in offsets), min(y for _, y in offsets)))

    def shape(self, offsets: list[tuple[int, int]]) -> tuple[int, int]:
        """(rows, cols) of the map that holds every patch at these offsets."""
        places = [self.place(o) for o in offsets]
        return max([r + 1 for _, r in places], default=0), max([c + 1 for c, _ in places], default=0)


@dataclass(frozen=True)
class PlacedTile:
    """A `width` x `height` rectangle of a source file at `position`: what a tissue image's patch and a
    whole slide's tile share (the file they are read from, their place, their stored name)."""

    source: SourceFile
    position: Position
    width: int
    height: int

    @property
    def path(self) -> Path:
        return self.source.path

    @cached_property
    def relative(self) -> str:
        return tile_name(self.source.relative, self.position)

    @property
    def size(self) -> int:
        return self.source.size

    @property
    def mtime(self) -> float:
        return self.source.mtime

    @property
    def problem(self) -> str:
        return ""  # a tile exists only for a source that was read

    @property
    def source_name(self) -> str:
        return self.source.relative


@dataclass(frozen=True)
class Tile(PlacedTile):
    """A patch cut from a large tissue image at native resolution (an `Item`)."""

    def content_hash(self, sources: Sources | None = None) -> str:
        """The hash of the tissue image's bytes: any change to it is a change to every patch."""
        return (sources or Sources()).file_hash(self.path)

    def read(self, spec: InputSpec | None = None, sources: Sources | None = None) -> np.ndarray:
        (x, y), w, h = self.position, self.width, self.height
        piece = (sources or Sources()).tissue_image(self.path)[y:y + h, x:x + w]
        return piece.copy() if spec is None else prepare(piece, spec)

    def scale(self) -> None:
        return None


def _on_map(x: int, y: int) -> tuple[int, int] | None:
    """The offset, or None for one beyond any slide (a name claiming x=99999999 would make a heat map of terabytes)."""
    return (x, y) if x <= MAX_SLIDE_PX and y <= MAX_SLIDE_PX else None


def patch_position(relative: str) -> tuple[int, int] | None:
    """(x, y) pixel offset of a patch, from `..._x<X>_y<Y>...` or a tile's `#x<X>_y<Y>`; None for
    none, or for one beyond any slide."""
    tile = parse_tile_name(relative)
    if tile is not None:
        return _on_map(*tile.position)
    match = PATCH_XY.search(relative.rpartition("/")[2])  # relative: posix
    return _on_map(int(match.group(1)), int(match.group(2))) if match else None


def item_offset(item: Item) -> tuple[int, int] | None:
    """An item's slide offset: a tile's own position, else the one its file name gives (a dataset's patch)."""
    return _on_map(*item.position) if item.position is not None else patch_position(item.relative)


def cell_offset(cell) -> tuple[int, int] | None:
    """A classified cell's slide offset: the one stored at classification, else from its file name."""
    return (cell.x, cell.y) if cell.x is not None else patch_position(cell.file)


def cut_tile(rgb: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    """The patch of a tissue image at (x, y): `size` px square, smaller at the image's edges."""
    return rgb[y:y + size, x:x + size]


def is_background(tile: np.ndarray, white_level: int = 220, max_tissue: float = 0.25) -> bool:
    """Mostly white (empty glass) tiles are skipped: less than a quarter of the pixels are tissue."""
    return bool(tissue_share(tile[None], white_level)[0] < max_tissue)


def tile_image(rgb: np.ndarray, source: SourceFile, grid: PatchGrid) -> list[Tile]:
    """Cut an RGB image into the model's patches (grid.size px, grid.stride apart) and keep the ones with tissue."""
    tiles = []
    height, width = rgb.shape[:2]
    for y in range(0, height, grid.stride):
        for x in range(0, width, grid.stride):
            piece = cut_tile(rgb, x, y, grid.size)
            if piece.shape[0] < grid.size // 2 or piece.shape[1] < grid.size // 2 or is_background(piece):
                continue
            tiles.append(Tile(source, Position(x, y), piece.shape[1], piece.shape[0]))
    return tiles


# Slide-map pixels per patch: the mosaic and both overlays are drawn at this one scale, so they line up.
MAP_CELL_PX = 10


def heat_map(offsets: list[tuple[int, int]], values: list[float], grid: PatchGrid) -> np.ndarray:
    """A (rows, cols) array of values at the patches' grid positions; NaN where there is no patch."""
    rows, cols = grid.shape(offsets)
    out = np.full((rows, cols), np.nan, dtype=np.float32)
    for offset, v in zip(offsets, values):
        column, row = grid.place(offset)
        if column >= 0 and row >= 0:
            out[row, column] = v
    return out


def build_mosaic(images: list[tuple[tuple[int, int], np.ndarray]], grid: PatchGrid, cell_px: int = MAP_CELL_PX) -> np.ndarray:
    """Reassemble the slide from its patches on the map's grid, cell_px a grid step (white where none)."""
    import cv2

    if not images:
        return np.full((cell_px, cell_px, 3), 255, np.uint8)
    rows, cols = grid.shape([offset for offset, _ in images])
    mosaic = np.full((rows * cell_px, cols * cell_px, 3), 255, np.uint8)
    for offset, rgb in images:
        column, row = grid.place(offset)
        if column < 0 or row < 0:
            continue
        # A patch larger than the stride (overlapping tiles) shows its first stride's worth.
        h = max(1, round(rgb.shape[0] * cell_px / grid.stride))
        w = max(1, round(rgb.shape[1] * cell_px / grid.stride))
        piece = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)[:cell_px, :cell_px]
        r, c = row * cell_px, column * cell_px
        mosaic[r:r + piece.shape[0], c:c + piece.shape[1]] = piece
    return mosaic


# Okabe–Ito colours (safe for the common colour-vision deficiencies), readable on pink H&E.
CALL_COLOURS = {1.0: ((213, 94, 0), 0.70), 0.0: ((0, 114, 178), 0.30), 2.0: ((240, 228, 66), 0.80)}
CALL_LEGEND = (("IDC (final call)", 1.0), ("no IDC", 0.0), ("awaiting review", 2.0))


# The AI-only map: P(IDC) from blue (0) to vermillion (1), the same Okabe–Ito ends as the calls.
PROBABILITY_ENDS = ((0, 114, 178), (213, 94, 0))
PROBABILITY_ALPHA = 0.65


def _map_base(shape: tuple[int, int], mosaic: np.ndarray | None, cell_px: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The mosaic under a (rows, cols) map (its top-left part: a whole slide's picture is there before its
    last tiles are called), or white when there is none that large; and the size (w, h)."""
    rows, cols = shape
    size = (cols * cell_px, rows * cell_px)
    if mosaic is not None and mosaic.shape[0] >= size[1] and mosaic.shape[1] >= size[0]:
        return mosaic[:size[1], :size[0]].astype(np.float32), size
    return np.full((size[1], size[0], 3), 255, np.float32), size


def _upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(np.nan_to_num(values, nan=-1.0).astype(np.float32), size, interpolation=cv2.INTER_NEAREST)


def call_overlay(calls: np.ndarray, mosaic: np.ndarray | None = None, cell_px: int = MAP_CELL_PX) -> np.ndarray:
    """The slide's final calls painted over its mosaic: 1 IDC, 0 not, 2 awaiting review, NaN no patch."""
    out, size = _map_base(calls.shape, mosaic, cell_px)
    grid = _upsample(calls, size)
    for value, (colour, alpha) in CALL_COLOURS.items():
        where = grid == value
        out[where] = out[where] * (1 - alpha) + np.array(colour, np.float32) * alpha
    return out.round().astype(np.uint8)


def probability_overlay(heat: np.ndarray, mosaic: np.ndarray | None = None, cell_px: int = MAP_CELL_PX) -> np.ndarray:
    """The AI's P(IDC) per patch over the mosaic, before any review (NaN: no patch)."""
    out, size = _map_base(heat.shape, mosaic, cell_px)
    p = _upsample(heat, size)
    where = p >= 0
    low, high = (np.array(c, np.float32) for c in PROBABILITY_ENDS)
    colour = low + (high - low) * p[where][:, None]
    out[where] = out[where] * (1 - PROBABILITY_ALPHA) + colour * PROBABILITY_ALPHA
    return out.round().astype(np.uint8)
