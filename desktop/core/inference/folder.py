"""What is in an analysed folder: its items for a model (files, or tiles of large tissue
images and whole slides) and a guess of the assay it holds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from desktop.core.inference.files import UnreadableFile, read_file
from desktop.core.inference.imaging import UnreadableImage, image_header, load_image, load_prepared
from desktop.core.inference.items import Item
from desktop.core.inference.model import Model
from desktop.core.inference.model_info import BLOOD, IDC
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
                         declared_mpp: float | None = None) -> list[Item]:
    """For patch models: a large tissue image becomes its tissue tiles (the model's patch size and
    stride), a whole slide its tissue tiles at the model's scale (`model_mpp`; `declared_mpp` for
    slides that do not record theirs); patches stay as they are."""
    items: list[Item] = []
    large = grid.size * TILE_MIN_PATCHES
    for f in files:
        if f.problem:
            items.append(f)  # the pipeline reports it with the reason
            continue
        if model_mpp is not None and is_slide_file(f.path):
            try:
                items.extend(slide_tiles(f, grid, model_mpp, declared_mpp))
            except SlideError as exc:
                items.append(replace(f, problem=str(exc)))
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


BLOOD_SAMPLE = 16  # images the blood model looks at before small images are taken for tissue patches


def guess_task(folder: Path, blood_model: Model | None = None, sample: int = 5) -> str | None:
    """'idc-patch' when the folder's first images are small patches, 'blood-differential'
    when they are larger single-cell images, None when there is nothing to judge (sizes are
    read from the headers). Size alone mistakes blood cells saved at 50x50 for patches, so
    with `blood_model` small images count as blood when most of the first ones are familiar
    to it: its Unfamiliar score separates the two (median score / threshold about 0.5 for PBC
    cells at 50x50, above 1.4 for every IDC patient's first patches; the IDC model's own score
    does not separate them)."""
    try:
        files = [f for f in scan_folder(Path(folder)) if not f.problem][:max(sample, BLOOD_SAMPLE)]
    except OSError:
        return None
    sizes = [size for f in files[:sample] if (size := _header_size(f)) is not None]
    if not sizes:
        return None
    if not (max(max(s) for s in sizes) <= 64 or min(max(s) for s in sizes) >= 1000):
        return BLOOD
    if blood_model is not None and looks_familiar(blood_model, files[:BLOOD_SAMPLE]):
        return BLOOD
    return IDC


def looks_familiar(model: Model, files: list[SourceFile]) -> bool:
    """True when most of these images are familiar to `model` (median Unfamiliar score under its threshold)."""
    if not model.has_ood:
        return False
    images = []
    for f in files:
        try:
            images.append(load_prepared(f.path, model.info.input))
        except UnreadableImage:
            continue
    if not images:
        return False
    _, scores = model.predict(np.stack(images))
    return scores is not None and float(np.median(scores)) < model.info.ood_threshold
