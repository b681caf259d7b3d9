"""OpenSlide in helper processes: a slide is a file from outside and OpenSlide a C library, so its open,
its reads and its format detection run in a small pool of child processes, each under a memory cap and
every request under a time limit. An abort, a hang or an allocation the cap refuses ends that child, never
the app: the caller gets a `SlideError` with one sentence and the next request starts a fresh child.

Limits are checked in the child right after the open (which reads only the file's directory), before any
pixel is allocated: claimed dimensions, tile sizes and the number of tiles the model would read."""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from desktop.core.inference.imaging import UnreadableImage
from desktop.core.inference.threads import worker_threads

MAX_SIDE_PX = 500_000  # level 0, a side: more than any scanner makes (a whole 25 x 75 mm slide at 0.25 µm/px: 300,000)
MAX_TILE_PIXELS = 64 * 2**20  # one stored tile of the file, in pixels: scanners store 256-1024 px tiles
MAX_MODEL_TILES = 250_000  # tiles at the model's scale: a 200,000² px slide at 0.25 µm/px gives 62,500
MEMORY_CAP_BYTES = 3 * 2**30  # the child's address space (it imports numpy, OpenCV and OpenSlide: ~1 GB)
OPEN_SECONDS, READ_SECONDS = 30.0, 60.0


class SlideError(UnreadableImage):
    """A whole-slide image that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class SlideFacts:
    """What the open told: the directory of the file, no pixels."""

    dimensions: tuple[int, int]
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    properties: dict[str, str]


# --- the child -------------------------------------------------------------------------------------------

def _rgb(region, size: tuple[int, int] | None = None) -> np.ndarray:
    """OpenSlide's RGBA region as RGB (area-resized to `size` (w, h) first: one pass over the four channels),
    white where there is no slide. Transparent pixels are (0, 0, 0, 0), so after the resize RGB + (255 - alpha)
    is the region laid on white."""
    import cv2

    rgba = np.asarray(region)
    if size is not None and (rgba.shape[1], rgba.shape[0]) != size:
        rgba = cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)
    alpha = rgba[:, :, 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[:, :, :3])
    return np.minimum(rgba[:, :, :3].astype(np.int16) + (255 - alpha.astype(np.int16)), 255).astype(np.uint8)


def _check_claims(slide) -> None:
    """Refuse, before any allocation, what no scanner makes (one sentence with the number)."""
    width, height = slide.dimensions
    if max(width, height) > MAX_SIDE_PX:
        raise SlideError(f"the slide claims {width:,} x {height:,} pixels, more than any scanner makes "
                         f"(at most {MAX_SIDE_PX:,} a side are read)")
    props = slide.properties
    for level in range(slide.level_count):
        try:
            tile = int(props.get(f"openslide.level[{level}].tile-width", 0)) * \
                int(props.get(f"openslide.level[{level}].tile-height", 0))
        except ValueError:
            tile = 0
        if tile > MAX_TILE_PIXELS:
            raise SlideError(f"the slide claims tiles of {tile:,} pixels at level {level} (at most {MAX_TILE_PIXELS:,})")


def _cap_memory() -> None:
    """The child's address space capped at MEMORY_CAP_BYTES: an allocation past it fails in this child only."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # Windows: no rlimit; the time limit and the process boundary still hold


class _OpenSlides:
    """The child's slides, each opened once and checked against the limits before any pixel is read."""

    def __init__(self, openslide) -> None:
        self.openslide = openslide
        self.slides: dict[str, object] = {}

    def slide_of(self, path: str):
        if path not in self.slides:
            try:
                slide = self.openslide.OpenSlide(path)
            except self.openslide.OpenSlideUnsupportedFormatError as exc:
                raise SlideError("not a whole-slide image OpenSlide can read") from exc
            _check_claims(slide)
            self.slides[path] = slide
        return self.slides[path]

    def answer(self, kind: str, path: str, args) -> object:
        """The value one request asks for."""
        if kind == "detect":
            return self.openslide.OpenSlide.detect_format(path)
        if kind == "open":
            s = self.slide_of(path)
            return SlideFacts(tuple(s.dimensions), tuple(tuple(d) for d in s.level_dimensions),
                              tuple(float(d) for d in s.level_downsamples), dict(s.properties))
        if kind == "region":
            location, level, size, out_size = args
            return _rgb(self.slide_of(path).read_region(location, level, size), out_size)
        if kind == "best_level":
            return int(self.slide_of(path).get_best_level_for_downsample(args))
        raise SlideError(f"unknown request {kind!r}")


def _serve(conn) -> None:
    """The child's loop: one request, one answer ("ok", value) or ("error", sentence)."""
    _cap_memory()
    import openslide

    slides = _OpenSlides(openslide)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        kind, path, args = request
        try:
            conn.send(("ok", slides.answer(kind, path, args)))
        except SlideError as exc:
            conn.send(("error", str(exc)))
        except MemoryError:
            conn.send(("error", "the slide asks for more memory than a slide may use"))
        except Exception as exc:  # noqa: BLE001 - OpenSlideError and any reader failure: the slide's reason
            conn.send(("error", f"damaged whole-slide image ({str(exc)[:200]})"))


# --- the parent ------------------------------------------------------------------------------------------

class _Child:
    """One helper process and its pipe; replaced when it dies or stops answering."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # read by the child's imports only
        try:
            self.process = context.Process(target=_serve, args=(child_end,), daemon=True, name="slidetally-openslide")
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child_end.close()

    def ask(self, request: tuple, seconds: float) -> object:
        try:
            self.conn.send(request)
            if not self.conn.poll(seconds):
                self.stop()
                raise SlideError(f"OpenSlide did not answer within {seconds:.0f} s (the file may be damaged or not a "
                                 "slide); it was stopped")
            status, value = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self.stop()
            code = self.process.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise SlideError(f"OpenSlide stopped while reading the slide ({how}): the file is damaged or claims "
                             "more than can be read") from exc
        if status == "error":
            raise SlideError(value)
        return value

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    @property
    def alive(self) -> bool:
        return self.process.is_alive()


class SlidePool:
    """A few helper processes shared by the decode threads (OpenSlide reads in parallel, one per child)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: queue.Queue[_Child | None] = queue.Queue()
        for _ in range(size):
            self._idle.put(None)  # started on first use

    def ask(self, request: tuple, seconds: float) -> object:
        child = self._idle.get()
        try:
            if child is None or not child.alive:
                child = _Child()
            return child.ask(request, seconds)
        finally:
            self._idle.put(child if child is not None and child.alive else None)

    def close(self) -> None:
        for _ in range(self.size):
            child = self._idle.get()
            if child is not None:
                child.stop()


_POOL: SlidePool | None = None
_POOL_LOCK = threading.Lock()


def pool(size_of: Callable[[], int] | None = None) -> SlidePool:
    """The process's slide pool (one child per decode thread, at most 4)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SlidePool(max(1, min(4, (size_of or worker_threads)())))
        return _POOL


def regular_file(path) -> bool:
    """Only regular files reach OpenSlide: a FIFO named .tif would block its format detection for ever."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
