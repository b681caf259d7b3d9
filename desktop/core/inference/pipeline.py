"""Batched classification of many images: decoding runs in worker threads while the model
infers the previous batch; results stream out per batch; cancel stops within one batch.

OpenCV and ONNX Runtime release the GIL, so threads keep every core busy without the cost
of pickling pixels between processes. At most `workers + 2` batches are in flight, so
memory stays flat whatever the number of images.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from desktop.core.inference.decision import Call, make_calls
from desktop.core.inference.imaging import UnreadableImage, decode_image, decode_prepared, prepare, read_bytes
from desktop.core.inference.model import Model, worker_threads
from desktop.core.inference.scan import content_hash
from desktop.core.inference.slide import Tile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    images_per_s: float

    @property
    def eta_s(self) -> float:
        return (self.total - self.done) / self.images_per_s if self.images_per_s > 0 else float("inf")


class _TissueImages:
    """Decodes each large tissue image once, however many of its tiles are asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict = {}

    def get(self, path) -> tuple[np.ndarray, str]:
        """The image's pixels and the content hash of its file."""
        with self._lock:
            if path not in self._cache:
                self._cache.clear()  # one tissue image at a time keeps memory bounded
                data = read_bytes(path)
                self._cache[path] = (decode_image(data), content_hash(data))
            return self._cache[path]


def decode_batch(items, model: Model, tissue: _TissueImages) -> tuple[np.ndarray, list, list[str], list[Call]]:
    """Decode and fit a batch, hashing each file's bytes on the way (its identity in the
    session); unreadable files become calls that carry the reason."""
    spec = model.info.input
    pixels = np.empty((len(items), spec.height, spec.width, 3), dtype=np.uint8)
    good, hashes, bad = [], [], []
    for item in items:
        digest = None
        try:
            if getattr(item, "problem", ""):  # a pipe, a device, a folder we may not list: never opened
                raise UnreadableImage(item.problem)
            if isinstance(item, Tile):
                rgb, digest = tissue.get(item.path)
                pixels[len(good)] = prepare(rgb[item.y:item.y + item.height, item.x:item.x + item.width], spec)
            else:
                data = read_bytes(item.path)
                digest = content_hash(data)
                pixels[len(good)] = decode_prepared(data, spec)
            good.append(item)
            hashes.append(digest)
        except UnreadableImage as exc:
            bad.append(Call(item.relative, item.size, item.mtime, content_hash=digest, unreadable=str(exc), review=True,
                            review_reason=f"unreadable: {exc}"))
        except Exception as exc:  # noqa: BLE001 - any decoder failure must not stop the batch
            bad.append(Call(item.relative, item.size, item.mtime, content_hash=digest,
                            unreadable=f"could not decode ({exc})", review=True, review_reason="unreadable"))
    return pixels[:len(good)], good, hashes, bad


def batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def classify(
    model: Model,
    items: list,
    on_calls: Callable[[list[Call]], None],
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    batch_size: int = 64,
    workers: int | None = None,
) -> int:
    """Classify `items` (SourceFile or Tile); returns how many were done before any cancel."""
    workers = workers or worker_threads()
    cancel = cancel or threading.Event()
    tissue = _TissueImages()
    done, start = 0, time.perf_counter()
    pending: deque[Future] = deque()
    chunks = iter(batches(items, batch_size))

    def infer(decoded):
        pixels, good, hashes, bad = decoded
        return (model.predict(pixels) if len(good) else (None, None)), good, hashes, bad

    # Decoding runs `workers + 2` batches ahead; the model runs one batch ahead of the calling
    # thread, which turns outputs into calls and stores them while the next batch is inferred.
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool, \
            ThreadPoolExecutor(1, thread_name_prefix="infer") as inference:
        def top_up():
            while len(pending) < workers + 2 and not cancel.is_set():
                chunk = next(chunks, None)
                if chunk is None:
                    return
                pending.append(pool.submit(decode_batch, chunk, model, tissue))

        def next_inferred() -> Future | None:
            if not pending or cancel.is_set():
                return None
            decoded = pending.popleft().result()
            top_up()
            return inference.submit(infer, decoded)

        top_up()
        inferred = next_inferred()
        while inferred is not None:
            (probabilities, ood), good, hashes, bad = inferred.result()
            inferred = next_inferred()
            calls = make_calls(model.info, good, probabilities, ood, hashes) + bad if len(good) else bad
            on_calls(calls)
            done += len(calls)
            if on_progress:
                elapsed = max(time.perf_counter() - start, 1e-6)
                on_progress(Progress(done, len(items), done / elapsed))
        for future in pending:
            future.cancel()
    log.info("%d of %d item(s) classified with %s in %.1f s%s", done, len(items), model.info.key,
             time.perf_counter() - start, " (cancelled)" if cancel.is_set() else "")
    return done
