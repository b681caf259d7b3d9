"""Which parts of a whole slide are tissue, decided on a low-resolution overview: only tissue tiles are
read, classified and counted.

Otsu's threshold on saturation separates stained tissue from glass (white or grey, unsaturated); pale
tissue (fat, loose stroma: barely saturated) is kept by being darker than the glass; very dark pixels
(black ink, dust, the slide's edge) and green-to-blue ink (pen marks round the tumour) are not tissue;
small specks are dropped and small holes inside the tissue filled.

GLASS_MARGIN and MIN_TISSUE_SHARE were chosen on the complete IDC patients outside the test split
(8913 val; 8914, 8917, 8918, 9041, 9077, 9078 train), assembled into slides (scripts/measure/wsi_measure.py): with
them the tiles found are the patches the data set kept (all seven: 161 of 8,970 patches missed, 30 tiles
more); on saturation alone 1,602 were missed (pale tissue), shifting the true fraction up to 5 points.
"""

from __future__ import annotations

import cv2
import numpy as np

# Overview pixels per model tile side: a 50 px tile at 4 µm/px is 8 px of 25 µm.
MASK_PX_PER_TILE = 8
MIN_SATURATION = 20  # Otsu on an almost empty slide would split the glass's noise: never below this
GLASS_MARGIN = 15  # HSV value this far below the glass's (its 99th percentile) is tissue, however pale
DARK_VALUE = 50  # HSV value below this: ink, dust or the slide's edge, not stained tissue
# Pen ink: strongly saturated green, cyan or blue (OpenCV hue 35-120, i.e. 70-240°). Haematoxylin is a paler
# blue-purple (its stain colour: hue ~245°, saturation ~85), eosin pink: neither is ink.
PEN_HUE = (35, 120)
PEN_SATURATION = 120
MIN_TISSUE_SHARE = 0.25  # a tile is classified when at least this share of it is tissue (as for tissue images)


def tissue_pixels(rgb: np.ndarray) -> np.ndarray:
    """A boolean mask of the overview's tissue pixels."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, saturation, value = hsv[:, :, 0], hsv[:, :, 1], hsv[:, :, 2]
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    glass = float(np.percentile(value, 99))
    tissue = (saturation > max(otsu, MIN_SATURATION)) | (value < glass - GLASS_MARGIN)
    pen = (hue >= PEN_HUE[0]) & (hue <= PEN_HUE[1]) & (saturation >= PEN_SATURATION)
    pen = cv2.dilate(pen.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # and its fringe, ink on stain
    # ink is taken out after the holes are filled: a pen mark on the tissue is not a hole to fill
    return _cleaned(tissue) & ~pen & (value >= DARK_VALUE)


def _cleaned(mask: np.ndarray) -> np.ndarray:
    """Specks smaller than a quarter tile removed, holes smaller than four tiles filled."""
    mask = mask.astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    small_speck = (MASK_PX_PER_TILE // 2) ** 2
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= small_speck
    mask = keep[labels]
    holes = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    small_hole = 4 * MASK_PX_PER_TILE ** 2
    h, w = mask.shape
    fill = np.zeros(n, bool)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches_edge = x == 0 or y == 0 or x + bw == w or y + bh == h
        fill[i] = area < small_hole and not touches_edge
    return mask | fill[labels]


def tissue_tiles(mask: np.ndarray, px_per_tile: int = MASK_PX_PER_TILE) -> np.ndarray:
    """(rows, cols) booleans: the grid tiles (px_per_tile overview px a side) that are mostly tissue."""
    rows, cols = -(-mask.shape[0] // px_per_tile), -(-mask.shape[1] // px_per_tile)
    padded = np.zeros((rows * px_per_tile, cols * px_per_tile), np.float32)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    share = padded.reshape(rows, px_per_tile, cols, px_per_tile).mean(axis=(1, 3))
    return share >= MIN_TISSUE_SHARE
