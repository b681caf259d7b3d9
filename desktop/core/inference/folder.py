"""What is in an analysed folder: its items for a model (files, or tiles of large tissue
images and whole slides) and a guess of the assay it holds."""

from __future__ import annotations

from pathlib import Path

from desktop.core.inference.files import UnreadableFile, read_file
from desktop.core.inference.imaging import UnreadableImage, image_header, load_image
from desktop.core.inference.model import BLOOD, IDC
from desktop.core.inference.scan import SourceFile, scan_folder
from desktop.core.inference.slide import TILE_MIN_PATCHES, PatchGrid, tile_image
from desktop.core.inference.wsi import SlideError, is_slide_file, slide_tiles


def _header_size(item: SourceFile) -> tuple[int, int] | None:
    """The size an image's header promises (its first 64 kB, read safely), or None."""
    try:
        header = image_header(read_file(item.path, head=65536))
    except UnreadableFile:
        return None
    return (header.width, header.height) if header else None


def expand_tissue_images(files: list[SourceFile], grid: PatchGrid, model_mpp: float | None = None,
                         declared_mpp: float | None = None) -> list:
    """For patch models: a large tissue image becomes its tissue tiles (the model's patch size and
    stride), a whole slide its tissue tiles at the model's scale (`model_mpp`; `declared_mpp` for
    slides that do not record theirs); patches stay as they are."""
    items: list = []
    large = grid.size * TILE_MIN_PATCHES
    for f in files:
        if f.problem:
            items.append(f)  # the pipeline reports it with the reason
            continue
        if model_mpp is not None and is_slide_file(f.path):
            try:
                items.extend(slide_tiles(f, grid, model_mpp, declared_mpp))
            except SlideError as exc:
                items.append(SourceFile(f.path, f.relative, f.size, f.mtime, str(exc)))
            continue
        size = _header_size(f)
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
            items.extend(tile_image(rgb, f, grid))
        else:
            items.append(f)
    return items


def guess_task(folder: Path, sample: int = 5) -> str | None:
    """'idc-patch' when the folder's first images are small patches, 'blood-differential'
    when they are larger single-cell images, None when there is nothing to judge (sizes are
    read from the headers: nothing is decoded)."""
    try:
        files = scan_folder(Path(folder))[:sample]
    except OSError:
        return None
    sizes = []
    for f in files:
        size = None if f.problem else _header_size(f)
        if size is not None:
            sizes.append(max(size))
    if not sizes:
        return None
    return IDC if max(sizes) <= 64 or min(sizes) >= 1000 else BLOOD
