"""Batched classification of many images: decoding runs in worker threads while the model
infers the previous batch; results stream out per batch; cancel stops within one batch.

OpenCV and ONNX Runtime release the GIL, so threads keep every core busy without the cost
of pickling pixels between processes. At most `workers + 2` batches are in flight, so
memory stays flat whatever the number of images.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from desktop.core.inference.decision import Call, make_calls
from desktop.core.inference.imaging import UnreadableImage
from desktop.core.inference.items import Item, Sources
from desktop.core.inference.model import Model
from desktop.core.inference.threads import ThreadChoice, worker_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    images_per_s: float

    @property
    def eta_s(self) -> float:
        return (self.total - self.done) / self.images_per_s if self.images_per_s > 0 else float("inf")


def decode_batch(items: list[Item], model: Model, sources: Sources) -> tuple[dict, list[Item], list[str], list[Call]]:
    """Decode and fit a batch, each item's content hash taken on the way (its identity in the
    session); unreadable items become calls that carry the reason."""
    spec = model.info.input
    pixels = np.empty((len(items), spec.height, spec.width, 3), dtype=np.uint8)
    good, hashes, bad = [], [], []
    for item in items:
        digest = None
        try:
            digest = item.content_hash(sources)  # read once: the same bytes give the pixels
            pixels[len(good)] = item.read(spec, sources)
            good.append(item)
            hashes.append(digest)
        except UnreadableImage as exc:
            bad.append(Call(item.relative, item.size, item.mtime, content_hash=digest, unreadable=str(exc), review=True,
                            review_reason=f"unreadable: {exc}"))
        except Exception as exc:  # noqa: BLE001 - any decoder failure must not stop the batch
            bad.append(Call(item.relative, item.size, item.mtime, content_hash=digest,
                            unreadable=f"could not decode ({exc})", review=True, review_reason="unreadable"))
    # The served graph's inputs are made here, beside decoding (a white-balance model's background).
    return model.feed(pixels[:len(good)]) if good else {}, good, hashes, bad


def batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Inferred:
    """Decoding and inference in their own threads, feeding the calling thread finished batches.

    The model thread takes decoded batches in order, keeps the decoders `workers + 2` batches
    ahead and hands its outputs to a short queue, so neither the model nor the decoders wait
    while the calling thread stores a batch; the queue's bound keeps memory flat."""

    _END = object()

    def __init__(self, model: Model, items: list[Item], batch_size: int, workers: int, cancel: threading.Event) -> None:
        self.model, self.workers, self.cancel = model, workers, cancel
        self.chunks = iter(batches(items, batch_size))
        self.pending: deque[Future] = deque()
        self.sources = Sources()  # a tissue image decoded, a slide hashed, once for all their tiles
        self.out: queue.Queue = queue.Queue(maxsize=2)
        self.stopped = threading.Event()  # the calling thread no longer takes batches
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        # SLIDETALLY_MODEL_THREADS=auto: the model's thread count measured on the first batches (threads.py).
        self.threads = ThreadChoice(getattr(model, "threads", 1), os.environ.get("SLIDETALLY_MODEL_THREADS") == "auto",
                                    queued=workers + 2)
        self.told = False
        self.thread = threading.Thread(target=self._run, name="infer", daemon=True)
        self.thread.start()

    def _top_up(self) -> None:
        while len(self.pending) < self.workers + 2 and not self.cancel.is_set():
            chunk = next(self.chunks, None)
            if chunk is None:
                return
            self.pending.append(self.pool.submit(decode_batch, chunk, self.model, self.sources))

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            self._top_up()
            last = time.perf_counter()
            while self.pending and not self.cancel.is_set() and not self.stopped.is_set():
                feed, good, hashes, bad = self.pending.popleft().result()
                self._top_up()
                threads = self.threads.next()
                outputs = self.model.predict_feed(feed, threads) if good else (None, None)
                self._put((outputs, good, hashes, bad))
                now = time.perf_counter()
                if good:
                    self.threads.record(threads, (now - last) / len(good))
                    if self.threads.chosen is not None and not self.told:
                        self.told = True
                        log.info("the model runs on %d thread(s) beside %d decoder(s)", self.threads.chosen, self.workers)
                last = now
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            self._put(exc)
        finally:
            self._put(self._END)

    def __iter__(self) -> Iterator[tuple]:
        while not self.cancel.is_set():
            item = self.out.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def classify(
    model: Model,
    items: list[Item],
    on_calls: Callable[[list[Call]], None],
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    batch_size: int = 64,
    workers: int | None = None,
) -> int:
    """Classify `items` (files, tissue-image patches, slide tiles); returns how many were done before any cancel."""
    cancel = cancel or threading.Event()
    done, start = 0, time.perf_counter()
    inferred = _Inferred(model, items, batch_size, workers or worker_threads(), cancel)
    try:
        for (probabilities, ood), good, hashes, bad in inferred:
            calls = make_calls(model.info, good, probabilities, ood, hashes) + bad if len(good) else bad
            on_calls(calls)
            done += len(calls)
            if on_progress:
                elapsed = max(time.perf_counter() - start, 1e-6)
                on_progress(Progress(done, len(items), done / elapsed))
    finally:
        inferred.close()
    log.info("%d of %d item(s) classified with %s in %.1f s%s", done, len(items), model.info.key,
             time.perf_counter() - start, " (cancelled)" if cancel.is_set() else "")
    return done
