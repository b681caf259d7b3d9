"""Deep site adaptation: every layer of a shipped model fine-tuned on a lab's verified cells.

The protocol, in the order it runs:
1. Rebuild the base model in Keras from its own ONNX file (`trainer/rebuild.py`), proved equal.
2. Grouped cross-validation (folds by specimen; byte-identical images one group): each fold
   fine-tunes a fresh copy and records its held-out logits at every checkpoint.
3. The number of epochs, the temperature and the review threshold that score a fold are chosen
   on the *other* folds only, so no reported cell had a say in the settings it is scored with.
4. The site model: a fresh copy fine-tuned on every cell for the epochs the folds chose; its
   Unfamiliar statistics refitted; written back into the base graph; proved against Keras.

A head on frozen features (`slidetally-cli adapt`) cannot move the features themselves; this can.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import onnx
import tensorflow as tf

from desktop import __version__
from desktop.core.calibration import (
    SITE_REVIEW_THRESHOLDS,
    choose_review_threshold,
    fit_temperature,
    review_tradeoff,
    softmax,
    unfamiliar_threshold,
)
from desktop.core.inference.contract import DEEP, ModelMetadata, SiteFit, SiteProvenance, site_model_metadata, write_props
from desktop.core.inference.decision import decide
from desktop.core.inference.model import Model
from desktop.core.lab.adaptation import RuleFigures, check_enough, figures_of, rare_classes, rule_figures
from trainer import export
from trainer.fitting import ood_scores
from trainer.rebuild import Rebuilt, keras_logits, onnx_outputs, prove_rebuild, rebuild, write_back
from trainer.site_data import SiteArrays

FOLDS = 3
CHECKPOINTS = (2, 4, 6, 8, 10, 12)  # epochs at which each fold's held-out cells are scored
LEARNING_RATE = 1e-4
BATCH = 32
MIN_STEPS_PER_EPOCH = 15  # small sets: an "epoch" is at least this many batches
OOD_FIT_CELLS = 400  # training cells per fold whose features fit that fold's Unfamiliar statistics
TARGET_ACCEPTED_ACCURACY = 0.96  # the review threshold: the lowest whose out-of-fold accepted calls reach this
MIN_SPECIMENS_FOR_GROUPS = 3
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


@dataclass(frozen=True)
class DeepAdaptation:
    proto: onnx.ModelProto  # not yet carrying the site metadata
    before: RuleFigures  # the base model on every cell, with its own thresholds
    after: RuleFigures  # out-of-fold, grouped: what other specimens of this lab can expect
    epochs: int
    temperature: float
    review_threshold: float
    ood_threshold: float
    folds: str  # how the folds were made, in words
    grouped_by_specimen: bool
    specimens: int
    cells_per_class: dict[str, int]
    seconds: float
    parity: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    soup: onnx.ModelProto | None = None  # experiment: the final and fold models' weights averaged
    review_classes: list[str] = field(default_factory=list)  # fewer than 10 verified cells: calls go to Review
    pseudo_labelled: int = 0  # unlabelled cells the final model also learned from
    unlabelled: int = 0  # unlabelled cells offered
    epoch_rule: str = ""

    def report(self) -> dict:
        """The `--report` JSON: before/after from the grouped cross-validation."""
        keys = ("accuracy", "balanced_accuracy", "accepted_share", "accepted_accuracy")

        def figure(value: float) -> float | None:  # none accepted: no accuracy among them (JSON has no NaN)
            return None if np.isnan(value) else round(float(value), 4)

        after = {k: figure(getattr(self.after, k)) for k in keys}
        if self.after.accuracy_interval is not None:
            after["accuracy_interval"] = [round(float(v), 4) for v in self.after.accuracy_interval]
        return {"before": {k: figure(getattr(self.before, k)) for k in keys}, "after": after,
                "review_classes": self.review_classes, "epoch_rule": self.epoch_rule,
                "unlabelled": {"offered": self.unlabelled, "pseudo_labelled": self.pseudo_labelled},
                "specimens": self.specimens, "cells": self.after.n, "grouped_by_specimen": self.grouped_by_specimen,
                "estimate": "site cross-validated" + ("" if self.grouped_by_specimen else
                                                      " (no specimens known: optimistic)"),
                "folds": self.folds, "epochs": self.epochs, "method": "deep: every layer fine-tuned",
                "seconds": round(self.seconds, 1), "notes": self.notes}


def grouped_folds(labels: np.ndarray, groups: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold index per cell; every group in exactly one fold (greedy by size, then class balance)."""
    unique, inverse = np.unique(groups, return_inverse=True)
    k = min(folds, len(unique))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    sizes = np.bincount(inverse)
    order = order[np.argsort(-sizes[order], kind="stable")]
    n_classes = int(labels.max()) + 1
    per_group = np.zeros((len(unique), n_classes))
    np.add.at(per_group, (inverse, labels), 1)
    load = np.zeros((k, n_classes))
    assign = np.empty(len(unique), int)
    for g in order:  # to the fold whose class counts it evens out most
        cost = [((load[f] + per_group[g]) ** 2).sum() for f in range(k)]
        f = int(np.argmin(cost))
        assign[g] = f
        load[f] += per_group[g]
    return assign[inverse]


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


def longest_within_one_se(per_fold: dict[int, list[float]]) -> int:
    """The epoch count to train for: the longest schedule whose mean out-of-fold accuracy is within one
    standard error (across folds) of the best mean. With ten specimens the curve is flat within noise,
    and "the best epoch" alone bets on the noise (it picked 2 where 12 were 5 points better)."""
    means = {e: float(np.mean(v)) for e, v in per_fold.items()}
    best = max(means, key=lambda e: (means[e], e))
    values = per_fold[best]
    se = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return max(e for e in means if means[e] >= means[best] - se - 1e-12)


EPOCH_RULE = "the longest schedule within one standard error (across folds) of the best out-of-fold accuracy"


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


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def fit_unfamiliar(features: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """The trainer's Unfamiliar statistics on the site's cells; a class the lab has no cells of
    takes the mean of a present class (so it never becomes the nearest by accident)."""
    present = [k for k in range(n_classes) if (labels == k).sum() >= 2]
    remap = {k: i for i, k in enumerate(present)}
    stats = export.fit_ood(features[np.isin(labels, present)],
                           np.array([remap[k] for k in labels if k in remap]), len(present))
    means = np.stack([stats["means"][remap.get(k, 0)] for k in range(n_classes)])
    return {**stats, "means": means.astype(np.float32)}


def _review_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The lowest threshold whose accepted calls reach TARGET_ACCEPTED_ACCURACY (else the highest)."""
    return choose_review_threshold(review_tradeoff(probs, labels, thresholds=SITE_REVIEW_THRESHOLDS),
                                   TARGET_ACCEPTED_ACCURACY)


def _outputs(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the head's input (the served `features`), in graph mode (3x eager's speed)."""
    extractor = tf.function(export.feature_model(model), reduce_retracing=True)
    logits, feats = [], []
    for i in range(0, len(images), 128):
        lo, _, fe = extractor(tf.cast(images[i:i + 128], tf.float32), training=False)
        logits.append(lo.numpy())
        feats.append(fe.numpy())
    return np.concatenate(logits), np.concatenate(feats)


def deep_adapt(base: onnx.ModelProto, site: SiteArrays, class_keys: list[str], base_thresholds: tuple,
               progress: Progress | None = None, cancel: threading.Event | None = None,
               folds: int = FOLDS, max_epochs: int = CHECKPOINTS[-1],
               min_steps: int = MIN_STEPS_PER_EPOCH, soup: bool = False,
               unlabelled: np.ndarray | None = None, pseudo_epochs: int = PSEUDO_EPOCHS) -> DeepAdaptation:
    """Cross-validate, then fit on every cell (see the module docstring).
    `base_thresholds`: the base model's (review, ood, decision) thresholds, for the "before" figures.
    `unlabelled`: the lab's classified, never verified cells (uint8 images), for one pseudo-label round."""
    start = time.perf_counter()
    counts = check_enough(site.labels, class_keys)
    n_classes = len(class_keys)
    images, labels = site.images, site.labels
    prove_rebuild(rebuild(base), images[:64])
    before = _base_figures(base, images, labels, base_thresholds)
    plan = _plan(site, folds, max_epochs, unlabelled, pseudo_epochs)
    ticks = _Ticks(progress, sum(plan.steps(int((plan.fold_of != f).sum()), min_steps) for f in range(plan.k))
                   + plan.steps(len(images), min_steps))
    held = _cross_validate(base, images, labels, n_classes, plan, ticks, cancel, min_steps, soup)
    rare = tuple(class_keys.index(c) for c in rare_classes(counts))  # too few verified cells: calls to Review
    after = _out_of_fold_figures(held, plan, labels, n_classes, rare, site.groups)
    chosen = _final_settings(held, plan, labels, n_classes)
    ticks.say("final model")
    final = _final_model(base, images, labels, n_classes, plan, chosen, ticks, cancel, min_steps)
    soup_proto = _soup(final.rebuilt, held, plan, chosen, images, labels, n_classes) if soup else None
    if progress:
        progress("done", 1.0)
    notes = _notes(plan.grouped, before, after, rare, class_keys)
    folds_text = (f"{plan.k}-fold grouped by specimen ({site.specimens} specimens)" if plan.grouped
                  else f"{plan.k}-fold by image (no specimens known)")
    return DeepAdaptation(final.proto, before, after, chosen.epochs, chosen.temperature, chosen.review_threshold,
                          chosen.ood_threshold, folds_text, plan.grouped, site.specimens, counts,
                          time.perf_counter() - start, final.parity, notes, soup_proto, [class_keys[i] for i in rare],
                          final.pseudo_labelled, plan.offered,
                          EPOCH_RULE + (f"; the longest schedule is {plan.stage1} epochs then one round of pseudo-labels "
                                        f"on the lab's unlabelled cells ({plan.extra} more)" if plan.extra else ""))


def _base_figures(base: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, base_thresholds: tuple) -> RuleFigures:
    """The base model on every cell, with its own (review, ood, decision) thresholds."""
    base_out = onnx_outputs(base, images)
    review0, ood0, decision0 = base_thresholds
    return rule_figures(base_out["probabilities"], base_out.get("ood_score"), labels, review0, ood0, decision0)


@dataclass(frozen=True)
class _Plan:
    """The folds, and the epochs each fine-tune runs: verified cells to `stage1`, then `extra` with pseudo-labels."""

    grouped: bool  # folds by specimen (else by image)
    fold_of: np.ndarray  # fold index per cell
    k: int
    checkpoints: list[int]
    stage1: int
    extra: int  # epochs of the pseudo-label round; 0 without unlabelled cells
    unlabelled: np.ndarray | None  # offered to every fine-tune (None without)

    @property
    def offered(self) -> int:
        return 0 if self.unlabelled is None else len(self.unlabelled)

    def steps(self, n: int, min_steps: int) -> int:
        """A fine-tune's batches on `n` verified cells: the verified stage, then at most every unlabelled cell."""
        return _steps(n, min_steps) * self.stage1 + (_steps(n + self.offered, min_steps) * self.extra if self.extra else 0)


def _plan(site: SiteArrays, folds: int, max_epochs: int, unlabelled: np.ndarray | None, pseudo_epochs: int) -> _Plan:
    grouped = site.grouped_by_specimen and site.specimens >= MIN_SPECIMENS_FOR_GROUPS
    labels = site.labels
    fold_of = grouped_folds(labels, site.groups if grouped else np.arange(len(labels)).astype(str), folds)
    with_unlabelled = unlabelled is not None and len(unlabelled) > 0 and pseudo_epochs > 0
    extra = pseudo_epochs if with_unlabelled else 0
    checkpoints = schedule(max_epochs, extra)
    return _Plan(grouped, fold_of, int(fold_of.max()) + 1, checkpoints, checkpoints[-2] if extra else checkpoints[-1],
                 extra, unlabelled if with_unlabelled else None)


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


@dataclass
class _HeldOut:
    """What the fold models gave at each checkpoint: held-out logits and features per epoch; per (fold, epoch)
    some training cells' features (for that fold's Unfamiliar statistics) and, for the soup, the weights."""

    logits: dict[int, np.ndarray]
    feats: dict[int, np.ndarray] = field(default_factory=dict)
    train_feats: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    fold_weights: dict[tuple[int, int], list[np.ndarray]] = field(default_factory=dict)


def _cross_validate(base: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, n_classes: int, plan: _Plan,
                    ticks: _Ticks, cancel: threading.Event | None, min_steps: int, soup: bool) -> _HeldOut:
    """Each fold fine-tunes a fresh copy on the other folds' cells and scores its own at every checkpoint."""
    held = _HeldOut({e: np.zeros((len(labels), n_classes), np.float32) for e in plan.checkpoints})
    for f in range(plan.k):
        train, test = plan.fold_of != f, plan.fold_of == f

        some_train = np.flatnonzero(train)
        some_train = np.random.default_rng(f).permutation(some_train)[:OOD_FIT_CELLS]

        def record(epoch, model, f=f, test=test, some_train=some_train):
            logits, feats = _outputs(model, images[test])
            held.logits[epoch][test] = logits
            held.feats.setdefault(epoch, np.zeros((len(labels), feats.shape[1]), np.float32))[test] = feats
            held.train_feats[(f, epoch)] = (_outputs(model, images[some_train])[1], labels[some_train])
            if soup:
                held.fold_weights[(f, epoch)] = [w.copy() for w in model.get_weights()]

        _fine_tune(base, images[train], labels[train], plan.stage1, seed=f, on_checkpoint=record, cancel=cancel,
                   tick=ticks.tick, min_steps=min_steps, unlabelled=plan.unlabelled, pseudo_epochs=plan.extra)
    return held


def _best_epoch(held: _HeldOut, plan: _Plan, labels: np.ndarray, mask: np.ndarray) -> int:
    """The epochs chosen on the folds that hold cells of `mask` (settings never see the cells they score)."""
    included = [g for g in range(plan.k) if (mask & (plan.fold_of == g)).any()]
    return longest_within_one_se({e: [_accuracy(held.logits[e][plan.fold_of == g], labels[plan.fold_of == g])
                                      for g in included] for e in plan.checkpoints})


def _out_of_fold_figures(held: _HeldOut, plan: _Plan, labels: np.ndarray, n_classes: int, rare: tuple,
                         groups: np.ndarray) -> RuleFigures:
    """Each fold's cells called with epochs, temperature and thresholds chosen on the other folds only."""
    probs = np.zeros((len(labels), n_classes))
    ood = np.zeros(len(labels))
    accepted = np.zeros(len(labels), bool)
    top = np.zeros(len(labels), int)
    for f in range(plan.k):
        others, test = plan.fold_of != f, plan.fold_of == f
        e = _best_epoch(held, plan, labels, others)
        t = fit_temperature(held.logits[e][others], labels[others])
        p_others = softmax(held.logits[e][others], t)
        review = _review_threshold(p_others, labels[others])
        stats = fit_unfamiliar(*held.train_feats[(f, e)], n_classes)
        scores = ood_scores(held.feats[e], stats)
        ood_threshold = unfamiliar_threshold(scores[others])
        probs[test] = softmax(held.logits[e][test], t)
        ood[test] = scores[test]
        rule = decide(probs[test], ood[test], review, ood_threshold, review_classes=rare)
        accepted[test], top[test] = rule.accepted, rule.top
    return figures_of(top, accepted, labels, groups if plan.grouped else np.arange(len(labels)))


@dataclass(frozen=True)
class _Settings:
    """What the site model is trained and served with, chosen on every fold's held-out cells."""

    epochs: int
    temperature: float
    review_threshold: float
    ood_threshold: float


def _final_settings(held: _HeldOut, plan: _Plan, labels: np.ndarray, n_classes: int) -> _Settings:
    epochs = _best_epoch(held, plan, labels, np.ones(len(labels), bool))
    temperature = fit_temperature(held.logits[epochs], labels)
    review_threshold = _review_threshold(softmax(held.logits[epochs], temperature), labels)
    oof_ood = np.concatenate([ood_scores(held.feats[epochs][plan.fold_of == f],
                                         fit_unfamiliar(*held.train_feats[(f, epochs)], n_classes))
                              for f in range(plan.k)])
    return _Settings(epochs, temperature, review_threshold, unfamiliar_threshold(oof_ood))


@dataclass(frozen=True)
class _FinalModel:
    rebuilt: Rebuilt  # fine-tuned on every cell
    proto: onnx.ModelProto
    parity: dict
    pseudo_labelled: int


def _final_model(base: onnx.ModelProto, images: np.ndarray, labels: np.ndarray, n_classes: int, plan: _Plan,
                 chosen: _Settings, ticks: _Ticks, cancel: threading.Event | None, min_steps: int) -> _FinalModel:
    """A fresh copy fine-tuned on every cell for the chosen epochs, its Unfamiliar statistics refitted, written
    back into the base graph and proved against Keras."""
    pseudo: list[int] = []
    final_pseudo = plan.extra if chosen.epochs > plan.stage1 else 0  # the rule chose the pseudo-label round
    rebuilt = _fine_tune(base, images, labels, plan.stage1 if final_pseudo else chosen.epochs, seed=plan.k,
                         on_checkpoint=None, cancel=cancel, tick=ticks.tick, min_steps=min_steps,
                         unlabelled=plan.unlabelled if final_pseudo else None, pseudo_epochs=final_pseudo, pseudo=pseudo)
    _, feats = _outputs(rebuilt.model, images)
    stats = fit_unfamiliar(feats, labels, n_classes)
    proto = write_back(rebuilt, chosen.temperature, stats)
    height, width = images.shape[1:3]
    serve = export.serving_function(rebuilt.model, chosen.temperature, stats, height, width)
    parity = export.prove_parity(serve, proto, images[:256])
    return _FinalModel(rebuilt, proto, parity, sum(pseudo))


def _soup(rebuilt: Rebuilt, held: _HeldOut, plan: _Plan, chosen: _Settings, images: np.ndarray, labels: np.ndarray,
          n_classes: int) -> onnx.ModelProto:
    """Experiment: the final and fold models' weights at the chosen epoch averaged (overwrites `rebuilt`'s)."""
    members = [rebuilt.model.get_weights()] + [held.fold_weights[(f, chosen.epochs)] for f in range(plan.k)]
    rebuilt.model.set_weights([np.mean(ws, axis=0) for ws in zip(*members)])
    soup_stats = fit_unfamiliar(_outputs(rebuilt.model, images)[1], labels, n_classes)
    return write_back(rebuilt, chosen.temperature, soup_stats)


def _notes(grouped: bool, before: RuleFigures, after: RuleFigures, rare: tuple, class_keys: list[str]) -> list[str]:
    """What the technician should know before trusting the figures."""
    notes = []
    if not grouped:
        notes.append("No specimens were known (or fewer than 3): folds are by image, and cells of one specimen may be "
                     "on both sides. The figures are optimistic.")
    if after.accuracy < before.accuracy or after.balanced_accuracy < before.balanced_accuracy:
        notes.append(f"Worse than the base model on this lab's cells (accuracy {before.accuracy:.1%} → "
                     f"{after.accuracy:.1%}, balanced {before.balanced_accuracy:.1%} → {after.balanced_accuracy:.1%}).")
    if rare:
        notes.append(f"Fewer than 10 verified cells of {', '.join(class_keys[i] for i in rare)}: the site model's "
                     "calls of these go to Review. Verify more of them before trusting its calls.")
    return notes


def site_metadata(base: Model, result: DeepAdaptation, site: str, number: int, approved_by: str, source: dict,
                  override: str | None = None) -> dict[str, str]:
    """The site model's metadata, written by the contract's one site writer (the quick method uses it too).
    `source` may carry the signers (`who_signed`); a candidate has no approver until it is installed."""
    provenance = SiteProvenance(
        name=site, number=number, method=DEEP, cells_per_class=result.cells_per_class, source=source,
        cross_validation=result.folds, before=result.before.as_dict(), after=result.after.as_dict(),
        notes=tuple(result.notes), approved_by=approved_by, override=override or "",
        fitting={"specimens": result.specimens, "grouped_by_specimen": result.grouped_by_specimen,
                 "epochs": result.epochs, "epoch_rule": result.epoch_rule,
                 "unlabelled": {"offered": result.unlabelled, "pseudo_labelled": result.pseudo_labelled},
                 "augmentation": AUGMENTATION, "learning_rate": LEARNING_RATE})
    fit = SiteFit(result.temperature, result.review_threshold, result.ood_threshold, tuple(result.review_classes),
                  made_by="slidetally-train adapt", when=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                  software={"slidetally": __version__, "tensorflow": tf.__version__}, parity=result.parity)
    base_metadata = ModelMetadata.from_props(dict(base.session.get_modelmeta().custom_metadata_map))
    return site_model_metadata(base_metadata, base.info.key, base.info.sha256, provenance, fit).to_props()


def with_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    write_props(out, metadata)
    out.producer_name = "slidetally-train adapt"
    onnx.checker.check_model(out)
    return out


__all__ = ["DeepAdaptation", "deep_adapt", "grouped_folds", "site_metadata", "with_metadata", "keras_logits"]
