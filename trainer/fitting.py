"""Fitting and running the Keras models: data pipelines, the training loop, precise
batch norm, batched prediction, and the ONNX speed probe."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf

from trainer import evaluate, export
from trainer.augment import AugmentConfig, augment_batch
from trainer.data import DecodedSplit
from trainer.recipe import Recipe


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def _train_ds(x, y, batch, augment: AugmentConfig | None, weights=None):
    """`y` is one label array, or a tuple (label, sub-type) for the auxiliary head."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=1, reshuffle_each_iteration=True)
    ds = ds.batch(batch, drop_remainder=len(x) > batch)
    if augment is not None:
        ds = ds.map(lambda a, b: augment_batch(a, b, augment), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    if weights is not None:
        w = tf.constant(weights, tf.float32)
        ds = ds.map(lambda a, b: (a, b, tf.gather(w, b[0] if isinstance(b, tuple) else b)))
    return ds.prefetch(tf.data.AUTOTUNE)


def _val_ds(x, y, batch):
    """Clean validation batches; `y` as in `_train_ds`."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).map(lambda a, b: (tf.cast(a, tf.float32), b))


def class_weights(y: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n).astype(np.float64)
    return (len(y) / (n * np.maximum(counts, 1))).astype(np.float32)


@dataclass(frozen=True)
class Trained:
    """A fitted model, how long it took, and whether it was fitted now or reused from the run folder."""

    model: keras.Model
    minutes: float
    fresh: bool
    history: dict[str, list[float]]


def train_model(name: str, model: keras.Model, arrays: dict[str, DecodedSplit], cfg: Recipe, out: Path,
                epochs: int, seed_style: bool) -> Trained:
    """Fit one model (resumable); seed models keep the reference recipe (Adam + early stopping)."""
    path = out / f"{name}.keras"
    history_csv = out / f"{name}.history.csv"
    if path.exists():
        log(f"{name}: already trained, reusing {path.name}")
        meta = json.loads((out / f"{name}.train.json").read_text())
        return Trained(keras.models.load_model(path), meta["minutes"], False, evaluate.read_history(history_csv))
    x_train, y_train, x_val, y_val = arrays["train"].x, arrays["train"].y, arrays["val"].x, arrays["val"].y
    n_classes = int(max(y_train.max(), y_val.max()) + 1)
    weights = class_weights(y_train, n_classes) if cfg.balanced and not seed_style else None
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fitted = model
    subtypes = sorted({i.subtype for s in ("train", "val") for i in arrays[s].items}) if cfg.subtype_weight else []
    if not seed_style and len(subtypes) > 1:
        # The sub-type head shares everything up to the pooled features and is dropped at export:
        # it asks the features to separate band from segmented neutrophils, myelocytes from
        # metamyelocytes, which is where the 8-class boundary (ig vs neutrophil) is hardest.
        sub_logits = keras.layers.Dense(len(subtypes), name="subtype_logits")(export.head_input(model))
        fitted = keras.Model(model.inputs, {"logits": model.outputs[0], "subtype": sub_logits}, name=f"{name}_train")
        code = {t: k for k, t in enumerate(subtypes)}
        sub_train = np.array([code[i.subtype] for i in arrays["train"].items], np.int32)
        sub_val = np.array([code[i.subtype] for i in arrays["val"].items], np.int32)
        y_train, y_val = (y_train, sub_train), (y_val, sub_val)
        log(f"{name}: auxiliary sub-type head over {len(subtypes)} sub-types: {', '.join(subtypes)}")
    if seed_style:
        optimizer = keras.optimizers.Adam()
        callbacks = [keras.callbacks.EarlyStopping("val_accuracy", min_delta=0.005, patience=5, restore_best_weights=True)]
        train = _train_ds(x_train, y_train, 32, None)
    else:
        steps = epochs * max(1, len(x_train) // cfg.batch)
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate * 0.1, steps, warmup_target=cfg.learning_rate,
                                                          warmup_steps=max(1, steps // 20))
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=1e-4, use_ema=cfg.ema > 0,
                                           ema_momentum=cfg.ema or 0.99)
        callbacks = []
        train = _train_ds(x_train, y_train, cfg.batch, cfg.augment, weights)
    if fitted is model:
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    else:
        fitted.compile(optimizer=optimizer, loss={"logits": loss, "subtype": loss},
                       loss_weights={"logits": 1.0, "subtype": cfg.subtype_weight},
                       metrics={"logits": ["accuracy"]})
        train = train.map(lambda a, b: (a, {"logits": b[0], "subtype": b[1]}))
    callbacks += [
        keras.callbacks.BackupAndRestore(str(out / f"backup-{name}")),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
    ]
    log(f"{name}: training {model.count_params():,} parameters for up to {epochs} epochs on {len(x_train)} images")
    start = time.perf_counter()
    val = _val_ds(x_val, y_val, 256)
    if fitted is not model:
        val = val.map(lambda a, b: (a, {"logits": b[0], "subtype": b[1]}))
    fitted.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=2)
    minutes = (time.perf_counter() - start) / 60
    model.save(path)
    (out / f"{name}.train.json").write_text(json.dumps({"minutes": minutes}))
    shutil.rmtree(out / f"backup-{name}", ignore_errors=True)
    return Trained(model, minutes, True, evaluate.read_history(history_csv))


def recalibrate_batch_norm(model: keras.Model, x: np.ndarray, batches: int = 200, batch: int = 64) -> None:
    """Re-estimate batch-norm statistics on clean (not augmented) training images.

    At a high learning rate the running averages lag behind the weights, and augmented
    batches differ from the clean images the app feeds; "precise BN" removes both gaps.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    for layer in norms:
        layer.momentum = 0.9
    rng = np.random.default_rng(3)
    for _ in range(batches):
        idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        model(tf.cast(x[idx], tf.float32), training=True)
    for layer in norms:
        layer.momentum = 0.99


def predict(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and Unfamiliar features for a uint8 array, in batches."""
    logits, features, _ = export.model_outputs(model, x)
    return logits, features


def ood_scores(features: np.ndarray, ood: dict) -> np.ndarray:
    z = (features - ood["centre"]) @ ood["whiten"]
    wm = ood["means"] @ ood["whiten"]
    return (((z[:, None, :] - wm[None]) ** 2).sum(-1) / z.shape[1]).min(axis=1)


def bench_onnx(proto_bytes: bytes, shape: tuple[int, int], batch: int, seconds: float = 3.0) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(proto_bytes, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 255, (batch, *shape, 3), dtype=np.uint8)
    for _ in range(3):
        session.run(None, {"image": x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"image": x})
        n += batch
    return n / (time.perf_counter() - start)
