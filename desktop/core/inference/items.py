"""What the model calls, behind one interface (QuPath's ImageServer idea): a file, a patch of a large
tissue image, a tile of a whole slide. Each reads its pixels, says what its content is (so a rescan
notices a changed source) and carries its position on its source as data. A tile's stored name,
`<source>#x<X>_y<Y>`, is written and read back here alone."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from desktop.core.inference.files import UnreadableFile, content_hash, hash_large_file
from desktop.core.inference.imaging import InputSpec, UnreadableImage, decode_image, read_bytes

TILE_NAME = re.compile(r"#x(\d+)_y(\d+)$")


@dataclass(frozen=True)
class SlideScale:
    """How a slide's pixels map to the model's: µm per level-0 pixel, where that came from, and the
    pyramid level read (its downsample) with the resize that gives the model `model_mpp`."""

    mpp: float
    source: str  # "the file (openslide.mpp-x)", "given by the technician", ...
    model_mpp: float
    level: int
    downsample: float

    @property
    def level0_per_model_px(self) -> float:
        return self.model_mpp / self.mpp

    @property
    def factor(self) -> float:
        """Level pixels per model pixel (1.0: the level is read as it is, no resize)."""
        return self.model_mpp / (self.mpp * self.downsample)

    def describe(self, name: str) -> str:
        return (f"{name}: {self.mpp:.4g} µm/px from {self.source}; read at pyramid level {self.level} "
                f"(×{self.downsample:.4g}) resized ×{1 / self.factor:.3g} to the model's {self.model_mpp:.4g} µm/px")

class Position(NamedTuple):
    """A tile's top-left pixel on its source (on a whole slide, in model pixels)."""

    x: int
    y: int


class TileName(NamedTuple):
    source: str  # the stored name of the file the tile is cut from
    position: Position


def tile_name(source: str, position: Position) -> str:
    """A tile's stored name. Sessions key its cell by it, so this form never changes."""
    return f"{source}#x{position.x}_y{position.y}"


def parse_tile_name(relative: str) -> TileName | None:
    """The source and position a stored tile name holds; None for a file of its own. Only for what keeps
    just the name (a stored cell): an item carries its position."""
    match = TILE_NAME.search(relative)
    if match is None:
        return None
    return TileName(relative[:match.start()], Position(int(match.group(1)), int(match.group(2))))


class Sources:
    """The files a run reads for its items, each read once however many items it holds: a file's bytes
    serve its hash and then its pixels, a tissue image is hashed and decoded once for all its patches, a
    whole slide is hashed once for all its tiles. Thread-safe; one per classification or rescan."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hashes: dict[Path, str] = {}
        self._refused: dict[Path, str] = {}  # a file that could not be hashed: its reason, for all its items
        self._held: tuple[Path, bytes] | None = None  # the tissue image last hashed, until it is decoded
        self._image: tuple[Path, np.ndarray] | None = None  # one tissue image at a time keeps memory bounded
        self._last = threading.local()  # each thread's last file: hashed first, then decoded by that thread

    def file_bytes(self, path: Path, keep: bool = True) -> bytes:
        """A file's bytes (`UnreadableImage` with the reason), kept for this thread's next ask unless `keep`
        is False (its pixels are the last thing read from it)."""
        last = getattr(self._last, "file", None)
        data = last[1] if last is not None and last[0] == path else read_bytes(path)
        self._last.file = (path, data) if keep else None
        return data

    def file_hash(self, path: Path) -> str:
        """The content hash of a file many items are cut from (a tissue image); its bytes are held until
        `tissue_image` decodes them, whichever thread asks first."""
        def hold() -> str:
            data = read_bytes(path)
            self._held = (path, data)
            return content_hash(data)

        return self._once(path, hold)

    def slide_hash(self, path: Path) -> str:
        """The content hash of a whole slide, streamed (never held) once for all its tiles."""
        def stream() -> str:
            digest = hash_large_file(path)
            if digest is None:
                raise UnreadableImage("could not read the slide file")
            return digest

        return self._once(path, stream)

    def _once(self, path: Path, compute: Callable[[], str]) -> str:
        with self._lock:
            if path not in self._hashes and path not in self._refused:
                try:
                    self._hashes[path] = compute()
                except UnreadableFile as exc:
                    self._refused[path] = str(exc)
            if path in self._refused:
                raise UnreadableImage(self._refused[path])
            return self._hashes[path]

    def tissue_image(self, path: Path) -> np.ndarray:
        """A large tissue image's pixels, decoded once for all its patches (from the bytes it was hashed from)."""
        with self._lock:
            if self._image is None or self._image[0] != path:
                held, self._held, self._image = self._held, None, None
                data = held[1] if held is not None and held[0] == path else read_bytes(path)
                self._image = (path, decode_image(data))
            return self._image[1]


class Item(Protocol):
    """One thing the model calls. `relative` is its stored name (its cell's key in the session); `path`,
    `size` and `mtime` are those of the file it is read from."""

    @property
    def path(self) -> Path: ...

    @property
    def relative(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def mtime(self) -> float: ...

    @property
    def problem(self) -> str:
        """Why it cannot be read at all ('' when it can): the reason on its row; it is never opened."""

    @property
    def source_name(self) -> str:
        """The stored name of the file it is read from (its own, for a file)."""

    @property
    def position(self) -> Position | None:
        """Where it lies on its source; None for a file of its own."""

    def content_hash(self, sources: Sources | None = None) -> str:
        """What its content is now (the same value: the same call stands); `UnreadableImage` when unreadable."""

    def read(self, spec: InputSpec | None = None, sources: Sources | None = None) -> np.ndarray:
        """Its RGB pixels, fitted to the model's input `spec` when one is given."""

    def scale(self) -> SlideScale | None:
        """How its pixels are scaled from its file's (a whole slide's tile); None when read as stored."""
