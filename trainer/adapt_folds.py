"""The cross-validation of deep site adaptation (`trainer/adapt.py`): grouped folds (by specimen), each fold's
held-out cells scored at every checkpoint, and the settings (epochs, temperature, review and Unfamiliar thresholds)
chosen on the other folds only, so no reported cell had a say in the settings it is scored with."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import onnx

from desktop.core.calibration import (
    SITE_REVIEW_THRESHOLDS,
    choose_review_threshold,
    fit_temperature,
    review_tradeoff,
    softmax,
    unfamiliar_threshold,
)
from desktop.core.inference.decision import decide
from desktop.core.lab.adaptation import RuleFigures, figures_of
from trainer import export
from trainer.adapt_fine_tune import _fine_tune, _outputs, _steps, _Ticks, schedule
from trainer.fitting import ood_scores
from trainer.site_data import SiteArrays

FOLDS = 3
OOD_FIT_CELLS = 400  # training cells per fold whose features fit that fold's Unfamiliar statistics
TARGET_ACCEPTED_ACCURACY = 0.96  # the review threshold: the lowest whose out-of-fold accepted calls reach this
MIN_SPECIMENS_FOR_GROUPS = 3


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

