"""An analysed folder: scan it, restore its stored session, classify what is new or
changed, and keep the results in the store. The CLI and the GUI both drive this."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from desktop.core.imaging import UnreadableImage, load_image
from desktop.core.model import Model
from desktop.core.pipeline import Progress, classify
from desktop.core.results import Call
from desktop.core.scan import SourceFile, scan_folder
from desktop.core.slide import TILE_MIN_PATCHES, tile_image
from desktop.core.store import SessionStore


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


class Analysis:
    def __init__(self, folder: Path, model: Model, data_root: Path):
        folder = Path(folder)
        if not folder.exists():
            raise FolderError(f"The folder {folder} does not exist.")
        if not folder.is_dir():
            raise FolderError(f"{folder} is not a folder.")
        self.folder = folder
        self.model = model
        self.store = SessionStore(folder, model.info, data_root)
        self.items: list = []

    def plan(self) -> list:
        """What still needs the model: new or changed files (a restored session needs nothing)."""
        try:
            files = scan_folder(self.folder)
        except OSError as exc:
            raise FolderError(f"Cannot read the folder {self.folder}: {exc.strerror or exc}") from exc
        if self.model.info.task == "idc-patch":
            self.items = expand_tissue_images(files, self.model.info.input.width)
        else:
            self.items = files
        self.store.forget_missing({i.relative for i in self.items})
        return self.store.still_to_classify(self.items)

    def run(self, todo: list, on_progress: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None, on_calls: Callable[[list[Call]], None] | None = None,
            batch_size: int = 64) -> int:
        def store_calls(calls: list[Call]) -> None:
            self.store.add_calls(calls)
            if on_calls:
                on_calls(calls)

        return classify(self.model, todo, store_calls, on_progress, cancel, batch_size=batch_size)


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
