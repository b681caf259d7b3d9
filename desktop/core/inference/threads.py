"""How many threads ONNX Runtime gets beside the decoders, measured on the first batches of a run
(opt-in: SLIDETALLY_MODEL_THREADS=auto), because the best split depends on the model and the machine.

Off by default: it holds a second session of the model (its memory), and on a machine shared
with other work (where it was measured) its stretches could not tell the settings apart.

On 2 cores the small IDC model runs barely faster on 2 threads than on 1 (measured 1.0-1.2x),
so its second thread is better left to the decoders; the blood model runs much faster on 2.
The first batches run in stretches on all threads and on one, each long enough to use up the
batches decoded ahead; the run keeps the setting under which batches then came out faster (the
time from one batch's outputs to the next's: the whole pipeline's rate, decoders and storing
included)."""

from __future__ import annotations

import os
import statistics

TIMED = 2  # batches timed at the end of each stretch
STRETCHES = 4  # all threads, one, all threads, one
MAX_THREADS = 8  # beyond this ONNX Runtime and the decoders gain nothing on a workstation


def worker_threads() -> int:
    """Threads for inference and for decoding: one per core, at most MAX_THREADS, unless the
    environment's SLIDETALLY_THREADS says otherwise (a shared machine, a thread curve)."""
    wanted = os.environ.get("SLIDETALLY_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return min(MAX_THREADS, int(wanted))
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


class ThreadChoice:
    """Which thread count the model runs each batch on; `record` each batch's time per image."""

    def __init__(self, threads: int, measure: bool = True, queued: int = 0) -> None:
        """`queued`: batches decoded ahead of the model. A stretch outlasts them before it is timed:
        until then the model eats what the previous setting's decoders made."""
        self.threads, self.stretch = threads, queued + 1 + TIMED
        self.plan = ([threads if i % 2 == 0 else 1 for i in range(STRETCHES) for _ in range(self.stretch)]
                     if threads > 1 and measure else [])
        self.times: dict[int, list[float]] = {threads: [], 1: []}
        self.seen = 0
        self.chosen: int | None = None if self.plan else threads

    def next(self) -> int:
        """The thread count for the next batch."""
        return self.chosen if self.chosen is not None else self.plan[self.seen]

    def record(self, threads: int, seconds_per_image: float) -> None:
        """The time from the previous batch's outputs to this one's, per image."""
        if self.chosen is not None:
            return
        if self.seen % self.stretch >= self.stretch - TIMED:
            self.times[threads].append(seconds_per_image)
        self.seen += 1
        if self.seen == len(self.plan):
            one, every = statistics.median(self.times[1]), statistics.median(self.times[self.threads])
            self.chosen = 1 if one < every else self.threads
