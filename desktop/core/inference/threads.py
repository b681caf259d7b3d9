"""How many threads ONNX Runtime gets beside the decoders: measured on the first batches of each
run, not fixed, because the best split depends on the model and the machine.

On 2 cores the small IDC model runs barely faster on 2 threads than on 1 (measured 1.0-1.2x),
so its second thread is better left to the decoders; the blood model runs much faster on 2.
The first batches run in short stretches on all threads and on one; the run keeps the setting
under which batches came out faster (the time from one batch's outputs to the next's: the
whole pipeline's rate, decoders and storing included)."""

from __future__ import annotations

import statistics

STRETCH = 3  # batches per stretch; the first of each is not timed (the pipeline settles)
STRETCHES = 4  # all threads, one, all threads, one


class ThreadChoice:
    """Which thread count the model runs each batch on; `record` each batch's time per image."""

    def __init__(self, threads: int, measure: bool = True) -> None:
        self.threads = threads
        self.plan = ([threads if i % 2 == 0 else 1 for i in range(STRETCHES) for _ in range(STRETCH)]
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
        if self.seen % STRETCH:  # the first batch of a stretch carries the previous setting's queue
            self.times[threads].append(seconds_per_image)
        self.seen += 1
        if self.seen == len(self.plan):
            one, every = statistics.median(self.times[1]), statistics.median(self.times[self.threads])
            self.chosen = 1 if one < every else self.threads
