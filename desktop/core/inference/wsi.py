"""Whole-slide images through OpenSlide (Aperio .svs, Hamamatsu .ndpi, MIRAX .mrxs, Leica .scn,
tiled pyramidal TIFF): the slide's own scale, the pyramid level that gives a patch model its scale,
and the model's tiles read on demand, never a whole level.

Tile positions are in model pixels (µm = x · model mpp), so a slide's tiles are named and placed on
the heat map like the patches of a folder (`slide.svs#x<X>_y<Y>`, X and Y multiples of the stride).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from desktop.core.inference.contract import IDC_MPP
from desktop.core.inference.imaging import MAX_PIXELS, InputSpec, prepare
from desktop.core.inference.items import Item, Position, SlideScale, Sources
from desktop.core.inference.model_info import MPP_RANGE
from desktop.core.inference.scan import SourceFile
from desktop.core.inference.slide import MAP_CELL_PX, PatchGrid, PlacedTile
from desktop.core.inference.slide_process import (
    MAX_MODEL_TILES,
    OPEN_SECONDS,
    READ_SECONDS,
    SlideError,
    SlideFacts,
    pool,
    regular_file,
)
from desktop.core.inference.tissue import MASK_PX_PER_TILE, tissue_pixels, tissue_tiles

# Vendor formats are whole slides by their name; a .tif/.tiff is one when OpenSlide reads it and it
# is pyramidal or too large to decode whole (a small plain TIFF stays an ordinary image).
VENDOR_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
TIFF_SUFFIXES = (".tif", ".tiff")
SLIDE_FILTER = "Whole-slide images (" + " ".join(f"*{s}" for s in VENDOR_SUFFIXES + TIFF_SUFFIXES) + ")"
# Tiles are read from a level at least this many times finer than the model and area-resized, as the
# training patches were made: JPEG blocks at a coarser scale change the calls. On val slide 8913 assembled
# at 16x (JPEG q90 tiles), calls equal to its PNG patches': 78% read at the model's scale, 95.7% read 4x
# finer, 99.2% 16x finer (a 40x scan for a 2.5x model: level 0).
READ_FINER = 16.0
SCALE_TOLERANCE = 0.02  # a level this much coarser than asked still counts (rounded downsamples)
MAX_COARSER = 1.05  # a slide coarser than the model by more than this is refused (upsampling invents detail)
# The largest region read in one OpenSlide call (pixels a side): the overview is built block by block.
READ_BLOCK_PX = 2048
MAX_OVERVIEW_PIXELS = 64 * 2**20  # an overview (tissue mask, mosaic) is never larger: refused before allocation
DETECT_SECONDS = 10.0


class ScaleUnknown(SlideError):
    """The slide does not say how large its pixels are, and none was given."""


def _openslide():
    try:
        import openslide
    except (ImportError, OSError) as exc:  # openslide-bin missing, or its library not loadable
        raise SlideError(f"whole-slide images need OpenSlide (openslide-python and openslide-bin), "
                         f"which is not installed ({exc})") from exc
    return openslide


def openslide_missing() -> str | None:
    """Why whole slides cannot be read here (OpenSlide or its library missing), or None when they can."""
    try:
        _openslide()
    except SlideError as exc:
        return str(exc)
    return None


def is_slide_name(path: Path) -> bool:
    """A name a whole slide may have (nothing is opened: for a drag over the window)."""
    return path.suffix.lower() in VENDOR_SUFFIXES + TIFF_SUFFIXES


def is_slide_file(path: Path) -> bool:
    """True for a file OpenSlide reads as a whole slide (by its name, then its contents for TIFF). Only regular
    files are looked into, in the helper process: a TIFF that crashes or hangs OpenSlide is taken as a slide,
    so it becomes one Unreadable row with the reason instead of reaching an image decoder."""
    suffix = path.suffix.lower()
    if suffix in VENDOR_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES or not regular_file(path) or openslide_missing():
        return False
    try:
        if pool().ask(("detect", str(path), None), DETECT_SECONDS) is None:
            return False
        facts: SlideFacts = pool().ask(("open", str(path), None), OPEN_SECONDS)
    except SlideError as exc:
        return "OpenSlide" in str(exc)  # stopped or crashed: a slide's row says why; a plain refusal: an image
    width, height = facts.dimensions
    return len(facts.level_dimensions) > 1 or width * height > MAX_PIXELS


def plausible_mpp(value: float) -> bool:
    low, high = MPP_RANGE
    return low <= value <= high


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and plausible_mpp(number) else None


def slide_mpp(properties, declared: float | None) -> tuple[float, str]:
    """µm per level-0 pixel and where it came from: the slide's own (OpenSlide's mpp-x, set from the
    vendor's header or the TIFF resolution tags), else the one the technician gave."""
    own = _float(properties.get("openslide.mpp-x"))
    if own is not None:
        vendor = properties.get("openslide.vendor", "")
        return own, "the file's TIFF resolution tags" if vendor == "generic-tiff" else f"the file ({vendor} header)"
    if declared is not None:
        return declared, "the technician (the slide does not record it)"
    raise ScaleUnknown("the slide does not record its pixel size (µm per pixel); give it (CLI: --mpp) "
                       "so the model sees tissue at its scale")


def choose_level(downsamples: tuple[float, ...], mpp: float, model_mpp: float) -> int:
    """The coarsest level at least READ_FINER times finer than the model (within SCALE_TOLERANCE), else
    the finest level: the fewest pixels to read that an area resize brings to the model's scale clean."""
    if mpp > model_mpp * MAX_COARSER:
        raise SlideError(f"the slide's pixels ({mpp:.3g} µm) are coarser than the model's ({model_mpp:.3g} µm); "
                         "scan it at a higher magnification")
    fits = [i for i, d in enumerate(downsamples) if mpp * d * READ_FINER <= model_mpp * (1 + SCALE_TOLERANCE)]
    return max(fits, key=lambda i: downsamples[i]) if fits else min(range(len(downsamples)), key=lambda i: downsamples[i])


class WholeSlide:
    """One slide read at a patch model's scale, through the helper processes (`slide_process`): this
    object holds what the open told, never an OpenSlide handle."""

    def __init__(self, path: Path, model_mpp: float, declared_mpp: float | None = None) -> None:
        _openslide()
        self.path = Path(path)
        if not regular_file(self.path):
            raise SlideError("not a regular file (a pipe, a device or a folder is never read as a slide)")
        facts: SlideFacts = pool().ask(("open", str(self.path), None), OPEN_SECONDS)
        mpp, source = slide_mpp(facts.properties, declared_mpp)
        downsamples = facts.level_downsamples
        level = choose_level(downsamples, mpp, model_mpp)
        self.scale = SlideScale(mpp, source, model_mpp, level, downsamples[level])
        self.dimensions = facts.dimensions
        self._facts = facts

    def close(self) -> None:
        """Nothing to release here: the helper processes hold the file."""

    def _region(self, location: tuple[int, int], level: int, size: tuple[int, int],
                out_size: tuple[int, int]) -> np.ndarray:
        return pool().ask(("region", str(self.path), (location, level, size, out_size)), READ_SECONDS)

    @property
    def model_size(self) -> tuple[int, int]:
        """(width, height) of the whole slide in model pixels."""
        k = self.scale.level0_per_model_px
        return int(self.dimensions[0] / k), int(self.dimensions[1] / k)

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB pixels of the model-pixel rectangle (x, y, width, height), at the model's scale."""
        s = self.scale
        k, f = s.level0_per_model_px, s.factor
        w, h = max(1, round(width * f)), max(1, round(height * f))
        return self._region((round(x * k), round(y * k)), s.level, (w, h), (width, height))

    def overview(self, model_px_per_px: float) -> np.ndarray:
        """The whole slide at 1/`model_px_per_px` of the model's scale, built block by block from the
        coarsest level that is fine enough (never a whole fine level in memory, never more than
        MAX_OVERVIEW_PIXELS: checked before the image is made)."""
        level = pool().ask(("best_level", str(self.path), self.scale.level0_per_model_px * model_px_per_px),
                           OPEN_SECONDS)
        downsample = float(self._facts.level_downsamples[level])
        level_w, level_h = self._facts.level_dimensions[level]
        per_level_px = downsample / (self.scale.level0_per_model_px * model_px_per_px)  # overview px per level px
        out_w, out_h = max(1, int(level_w * per_level_px)), max(1, int(level_h * per_level_px))
        if out_w * out_h > MAX_OVERVIEW_PIXELS:
            raise SlideError(f"the slide's overview would be {out_w:,} x {out_h:,} pixels (at most "
                             f"{MAX_OVERVIEW_PIXELS:,}): it claims more tissue than any slide holds")
        out = np.full((out_h, out_w, 3), 255, np.uint8)
        for top in range(0, level_h, READ_BLOCK_PX):
            for left in range(0, level_w, READ_BLOCK_PX):
                w, h = min(READ_BLOCK_PX, level_w - left), min(READ_BLOCK_PX, level_h - top)
                x0, y0 = int(left * per_level_px), int(top * per_level_px)
                x1, y1 = min(out_w, int((left + w) * per_level_px)), min(out_h, int((top + h) * per_level_px))
                if x1 > x0 and y1 > y0:
                    out[y0:y1, x0:x1] = self._region((round(left * downsample), round(top * downsample)), level,
                                                     (w, h), (x1 - x0, y1 - y0))
        return out


_OPEN = threading.Lock()
# The µm/px a technician gave for a slide in this process: thumbnails and the large view read its
# tiles at the same scale as the classification did.
_GIVEN: dict[str, float] = {}


@lru_cache(maxsize=4)
def _cached(path: str, model_mpp: float, declared_mpp: float | None, mtime: float) -> WholeSlide:
    return WholeSlide(Path(path), model_mpp, declared_mpp)


def open_slide(path: Path, model_mpp: float, declared_mpp: float | None = None) -> WholeSlide:
    """The slide, opened once per process for all its tiles (reopened when the file changes)."""
    with _OPEN:
        try:
            mtime = Path(path).stat().st_mtime
        except OSError as exc:
            raise SlideError(f"could not read the slide ({exc.strerror or exc})") from exc
        key = str(Path(path).resolve())
        if declared_mpp is not None:
            _GIVEN[key] = declared_mpp
        return _cached(str(path), model_mpp, _GIVEN.get(key), mtime)


def read_slide_tile(path: Path, x: int, y: int, size: int, model_mpp: float) -> np.ndarray:
    """A `size` px tile at model pixel (x, y) of a slide (thumbnails, the large view)."""
    return open_slide(path, model_mpp).read(x, y, size, size)


@dataclass(frozen=True)
class SlideTile(PlacedTile):
    """One model-sized tile of a whole slide (its position in model pixels), read when its batch is
    decoded, through the helper processes (an `Item`)."""

    declared_mpp: float | None = None
    model_mpp: float = 0.0

    def _slide(self) -> WholeSlide:
        return open_slide(self.path, self.model_mpp, self.declared_mpp)

    def content_hash(self, sources: Sources | None = None) -> str:
        """The slide file's bytes and the scale the tile is read at: a tile read at another µm per pixel is
        another tile (its call is not the old one's), like a file whose bytes changed."""
        file_hash = (sources or Sources()).slide_hash(self.path)
        try:
            mpp = self._slide().scale.mpp
        except SlideError:
            return file_hash
        return f"{file_hash}@{mpp:.6g}um"

    def read(self, spec: InputSpec | None = None, sources: Sources | None = None) -> np.ndarray:
        """The tile's pixels at the model's scale."""
        rgb = self._slide().read(*self.position, self.width, self.height)
        return rgb if spec is None else prepare(rgb, spec)

    def scale(self) -> SlideScale:
        return self._slide().scale


def tissue_grid(slide: WholeSlide, grid: PatchGrid) -> np.ndarray:
    """(rows, cols) booleans: which of the model's grid tiles are tissue, from the slide's overview."""
    return tissue_tiles(tissue_pixels(slide.overview(grid.stride / MASK_PX_PER_TILE)))


def slide_tiles(source: SourceFile, grid: PatchGrid, model_mpp: float, declared_mpp: float | None = None) -> list[SlideTile]:
    """The tissue tiles of a slide file (a SourceFile), in rows; `SlideError` when it cannot be used (a slide
    that claims more tiles at the model's scale than any slide holds is refused before its overview is read)."""
    slide = open_slide(source.path, model_mpp, declared_mpp)
    width, height = slide.model_size
    claimed = -(-width // grid.stride) * -(-height // grid.stride)
    if claimed > MAX_MODEL_TILES:
        raise SlideError(f"the slide claims {claimed:,} tiles at the model's scale ({width:,} x {height:,} model "
                         f"pixels; at most {MAX_MODEL_TILES:,}): more than any slide holds")
    tiles = []
    for row, column in zip(*np.nonzero(tissue_grid(slide, grid))):
        x, y = int(column) * grid.stride, int(row) * grid.stride
        if x < width and y < height:
            tiles.append(SlideTile(source, Position(x, y), grid.size, grid.size, declared_mpp, model_mpp))
    return tiles


def slide_mosaic(path: Path, grid: PatchGrid, shape: tuple[int, int] | None, model_mpp: float | None,
                 cell_px: int = MAP_CELL_PX) -> np.ndarray:
    """The slide's own overview under its map: `shape` (rows, cols; None: the whole slide) grid steps of
    `cell_px` px from the grid's origin, glass included, so the calls lie on the slide as the technician knows it."""
    slide = open_slide(path, model_mpp or IDC_MPP)
    overview = slide.overview(grid.stride / cell_px)
    width, height = slide.model_size
    rows, cols = shape or (-(-(height - grid.origin[1]) // grid.stride), -(-(width - grid.origin[0]) // grid.stride))
    top, left = grid.origin[1] * cell_px // grid.stride, grid.origin[0] * cell_px // grid.stride
    out = np.full((rows * cell_px, cols * cell_px, 3), 255, np.uint8)
    piece = overview[top:top + rows * cell_px, left:left + cols * cell_px]
    out[:piece.shape[0], :piece.shape[1]] = piece
    return out


def scale_notes(items: Iterable[Item]) -> str:
    """How each slide among `items` is read, one clause a slide ('' when there is none): for every report."""
    seen: dict[Path, str] = {}
    for item in items:
        if item.path not in seen and (scale := item.scale()) is not None:
            seen[item.path] = scale.describe(item.source_name)
    return "; ".join(seen.values())
