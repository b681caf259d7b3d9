"""What is in an analysed folder: its items for a model (files, or tiles of large tissue
images) and a guess of the assay it holds."""

from __future__ import annotations

from pathlib import Path

from desktop.core.imaging import UnreadableImage, load_image
from desktop.core.scan import SourceFile, scan_folder
from desktop.core.slide import TILE_MIN_PATCHES, tile_image


class FolderError(Exception):
    """The folder cannot be analysed (missing, not a folder, no permission)."""


def _png_size(path: Path) -> tuple[int, int] | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(24)
    except OSError:
        return None
    if head.startswith(b"\x89PNG") and len(head) == 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def expand_tissue_images(files: list[SourceFile], patch: int) -> list:
    """For patch models: a large tissue image becomes its tissue tiles; patches stay as they are."""
    items: list = []
    large = patch * TILE_MIN_PATCHES
    for f in files:
        size = _png_size(f.path)
        maybe_large = (size is not None and size[0] >= large and size[1] >= large) or (size is None and f.size > 64_000)
        if not maybe_large:
            items.append(f)
            continue
        try:
            rgb = load_image(f.path)
        except UnreadableImage:
            items.append(f)  # the pipeline reports it with the reason
            continue
        if rgb.shape[0] >= large and rgb.shape[1] >= large:
            items.extend(tile_image(rgb, f, patch))
        else:
            items.append(f)
    return items


def guess_task(folder: Path, sample: int = 5) -> str | None:
    """'idc-patch' when the folder's first images are small patches, 'blood-differential'
    when they are larger single-cell images, None when there is nothing to judge."""
    try:
        files = scan_folder(Path(folder))[:sample]
    except OSError:
        return None
    sizes = []
    for f in files:
        try:
            rgb = load_image(f.path)
        except UnreadableImage:
            continue
        sizes.append(max(rgb.shape[:2]))
    if not sizes:
        return None
    return "idc-patch" if max(sizes) <= 64 or min(sizes) >= 1000 else "blood-differential"
