"""One fine-tune of deep site adaptation (`trainer/adapt.py`): a fresh Keras copy of the base model trained on
the lab's verified cells through the checkpoints, each batch turned and flipped as a whole, then (with the lab's
unlabelled cells) one round of pseudo-labels. Also the model's outputs a run scores with, and its progress."""

from __future__ import annotations

import threading
from collections.abc import Callable

import keras
import numpy as np
import onnx
import tensorflow as tf

from desktop.core.calibration import softmax
from trainer import export
from trainer.rebuild import rebuild

CHECKPOINTS = (2, 4, 6, 8, 10, 12)  # epochs at which each fold's held-out cells are scored
LEARNING_RATE = 1e-4
BATCH = 32
MIN_STEPS_PER_EPOCH = 15  # small sets: an "epoch" is at least this many batches
# Cells stay cells: each batch turned and flipped as a whole (one of the 8 orientations). Per-cell
# stain, scale, light and blur jitter (trainer/augment.py) halved the steps per second on 2 cores
# (1,160 cells: 20 min instead of under 10) for another lab's look that the graph's white balance
# already divides out; the probe that set the floor used flips and turns alone.
AUGMENTATION = "one of the 8 flips/90-degree turns per batch"
# The lab's unlabelled cells (classified, never verified): one round of pseudo-labels after the last
# checkpoint. A cell is kept when the fold's model calls it with P >= PSEUDO_CONFIDENCE, averaged over the
# 8 orientations, and gives the same call in every one of them; then PSEUDO_EPOCHS more on verified plus
# pseudo-labelled cells. Temperature and thresholds are fitted on verified cells only.
PSEUDO_CONFIDENCE = 0.9
PSEUDO_EPOCHS = 4

Progress = Callable[[str, float], None]  # (stage, fraction of the whole run done)


class Cancelled(Exception):
    """The technician cancelled; nothing was written."""


def _steps(n: int, min_steps: int = MIN_STEPS_PER_EPOCH) -> int:
    return max(min_steps, int(np.ceil(n / BATCH)))


def _dataset(images: np.ndarray, labels: np.ndarray, seed: int) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat().batch(BATCH)
    return data.map(_turn_and_flip).prefetch(2)


def _turn_and_flip(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    x = tf.image.rot90(tf.cast(images, tf.float32), k=tf.random.uniform([], 0, 4, tf.int32))
    return tf.image.random_flip_left_right(x), labels


class _Watch(keras.callbacks.Callback):
    def __init__(self, cancel: threading.Event | None, tick: Callable[[], None]) -> None:
        super().__init__()
        self.cancel, self.tick = cancel, tick

    def on_train_batch_end(self, batch, logs=None):
        if self.cancel is not None and self.cancel.is_set():
            self.model.stop_training = True
            raise Cancelled("cancelled")
        self.tick()


def pseudo_labels(model: keras.Model, unlabelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, classes) of the unlabelled cells called with P >= PSEUDO_CONFIDENCE averaged over the 8
    orientations and with the same call in each of them."""
    probs, calls = [], []
    for k in range(4):
        for flip in (False, True):
            view = np.rot90(unlabelled, k, axes=(1, 2))
            view = view[:, :, ::-1] if flip else view
            p = softmax(_outputs(model, np.ascontiguousarray(view))[0])
            probs.append(p)
            calls.append(p.argmax(1))
    mean = np.mean(probs, axis=0)
    top = mean.argmax(1)
    keep = (mean.max(1) >= PSEUDO_CONFIDENCE) & np.all(np.stack(calls) == top, axis=0)
    return np.flatnonzero(keep), top[keep]


def schedule(stage1: int, pseudo_epochs: int = 0) -> list[int]:
    """The checkpoints a fine-tune passes: CHECKPOINTS up to `stage1`, then (with the lab's unlabelled cells)
    the end of the pseudo-label round, `stage1 + pseudo_epochs`."""
    stops = [e for e in CHECKPOINTS if e <= stage1] or [stage1]
    return stops + ([stops[-1] + pseudo_epochs] if pseudo_epochs else [])


def _fine_tune(base: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, stage1: int, seed: int,
               on_checkpoint: Callable[[int, keras.Model], None] | None, cancel, tick, min_steps: int,
               unlabelled: np.ndarray | None = None, pseudo_epochs: int = 0, pseudo: list | None = None):
    """Fine-tune a fresh copy through `schedule(stage1, pseudo_epochs)`; the pseudo-label round (with
    `unlabelled`) appends how many cells it used to `pseudo`."""
    keras.utils.set_random_seed(seed)
    rebuilt = rebuild(base)
    model = rebuilt.model
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = _dataset(images, labels, seed)
    steps = _steps(len(images), min_steps)
    watch = _Watch(cancel, tick)
    done = 0
    stops = schedule(stage1, pseudo_epochs if unlabelled is not None and len(unlabelled) else 0)
    for i, stop in enumerate(stops):
        if pseudo_epochs and i == len(stops) - 1 and stop > stage1:  # verified plus confidently, consistently called
            keep, classes = pseudo_labels(model, unlabelled)
            if pseudo is not None:
                pseudo.append(len(keep))
            data = _dataset(np.concatenate([images, unlabelled[keep]]), np.concatenate([labels, classes]), seed + 1)
            steps = _steps(len(images) + len(keep), min_steps)
        model.fit(data, epochs=stop - done, steps_per_epoch=steps, verbose=0, callbacks=[watch], shuffle=False)
        done = stop
        if on_checkpoint:
            on_checkpoint(stop, model)
    return rebuilt


def _outputs(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the head's input (the served `features`), in graph mode (3x eager's speed)."""
    logits, _, head = export.model_outputs(model, images, batch=128, graph=True)
    return logits, head


class _Ticks:
    """Counts the fine-tunes' batches and reports the share of the whole run done."""

    def __init__(self, progress: Progress | None, total_steps: int) -> None:
        self.progress, self.total_steps, self.done = progress, total_steps, 0

    def tick(self) -> None:
        self.done += 1
        if self.progress and self.done % 5 == 0:
            self.say("fine-tuning")

    def say(self, stage: str) -> None:
        if self.progress:
            self.progress(stage, min(self.done / self.total_steps, 0.99))

