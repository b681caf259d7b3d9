"""Site adaptation: a new classification head, Unfamiliar statistics and review threshold,
fitted on a lab's own verified cells (pooled features from the base model), judged only by
cross-validation grouped by session or specimen.

Guard rails for lopsided sets: the head is pulled towards the base model's head (an L2
penalty on the difference, its strength chosen by cross-validation), and the pull on a class
grows as its verified cells get fewer (1 + MIN_CELLS / n): a class with a handful of cells
stays close to the base model's weights, one with none nearly at them. (Freezing such classes
outright was tried: on BCCD and Tecom it gave balanced accuracy 0.58 / 0.57 against 0.69 / 0.62,
because a frozen base column keeps firing on the other lab's look.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from desktop.core.calibration import (
    SITE_REVIEW_THRESHOLDS,
    SITE_TEMPERATURES,
    fit_temperature,
    nll,
    softmax,
    unfamiliar_threshold,
)
from desktop.core.errors import SlideTallyError
from desktop.core.inference.decision import decide
from desktop.core.lab.graft import Head, SiteHead

MIN_CELLS = 10  # per class: fewer, and the class is held close to the base model's weights
MIN_TOTAL = 40
FOLDS = 5
STRENGTHS = (0.003, 0.01, 0.03, 0.1, 0.3)
TARGET_ACCEPTED_ACCURACY = 0.97  # the review threshold is the lowest that reaches this (cross-validated)
ITERATIONS = 300


class AdaptationRefused(SlideTallyError):
    """The verified set is too small to estimate anything; the message says what is missing."""


@dataclass(frozen=True)
class SiteSet:
    """A lab's verified cells: features from the base model, the technicians' classes, groups."""

    features: np.ndarray  # [n, F]
    labels: np.ndarray  # [n] class index (the final call)
    groups: np.ndarray  # [n] session / specimen: never split across folds
    base_probabilities: np.ndarray  # [n, C] the base model's output
    base_ood: np.ndarray | None  # [n] or None


@dataclass(frozen=True)
class RuleFigures:
    """How a decision rule does on verified cells."""

    n: int
    accuracy: float  # every call, accepted or not
    balanced_accuracy: float  # mean recall over the classes present
    accepted_share: float  # not sent to Review / Unfamiliar
    accepted_accuracy: float  # right among the accepted calls
    accuracy_interval: tuple[float, float] | None = None  # 95%, by resampling specimens (out-of-fold figures)

    def as_dict(self) -> dict:
        out = {k: round(float(v), 4) if isinstance(v, float) else v for k, v in self.__dict__.items()
               if k != "accuracy_interval"}
        if self.accuracy_interval is not None:
            out["accuracy_interval"] = [round(float(v), 4) for v in self.accuracy_interval]
        return out

    def interval_text(self) -> str:
        """'0.81–0.88 (95%, resampling specimens)', or '' without one."""
        if self.accuracy_interval is None:
            return ""
        lo, hi = self.accuracy_interval
        return f"{lo:.1%}–{hi:.1%} (95%, resampling specimens)"


BOOTSTRAP_ROUNDS = 2000


def specimen_interval(right: np.ndarray, groups: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS,
                      seed: int = 0) -> tuple[float, float]:
    """95% interval of an accuracy by resampling whole specimens (groups) with replacement: cells of
    one specimen share its look, so they are not independent draws."""
    right = np.asarray(right, bool)
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    hits = np.bincount(inverse, weights=right.astype(float), minlength=len(unique))
    sizes = np.bincount(inverse, minlength=len(unique)).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(unique), (rounds, len(unique)))
    accuracy = hits[draws].sum(axis=1) / np.maximum(sizes[draws].sum(axis=1), 1)
    return float(np.percentile(accuracy, 2.5)), float(np.percentile(accuracy, 97.5))


def rare_classes(counts: dict[str, int]) -> list[str]:
    """Classes with fewer than MIN_CELLS verified cells: named to the lab, and the site model's calls of
    them go to Review (metadata `review_classes`)."""
    return [k for k, n in counts.items() if n < MIN_CELLS]


@dataclass(frozen=True)
class Adaptation:
    site: SiteHead
    temperature: float
    review_threshold: float
    ood_threshold: float
    strength: float
    before: RuleFigures
    after: RuleFigures
    cells_per_class: dict[str, int]
    kept_from_base: list[str]  # classes with fewer than MIN_CELLS: held close to the base head, calls to Review
    folds: str
    notes: list[str] = field(default_factory=list)


def rule_figures(probabilities: np.ndarray, ood: np.ndarray | None, labels: np.ndarray, review_threshold: float,
                 ood_threshold: float | None, decision_threshold: float = 0.5,
                 review_classes: tuple[int, ...] = ()) -> RuleFigures:
    rule = decide(probabilities, ood, review_threshold, ood_threshold, decision_threshold, None, review_classes)
    return figures_of(rule.top, rule.accepted, labels)


def figures_of(calls: np.ndarray, accepted: np.ndarray, labels: np.ndarray,
               groups: np.ndarray | None = None) -> RuleFigures:
    """The figures of calls already decided (`accepted`: not sent to Review or Unfamiliar); with `groups`
    (the specimens), the accuracy's 95% interval by resampling them."""
    right = calls == labels
    recalls = [right[labels == k].mean() for k in np.unique(labels)]
    interval = specimen_interval(right, groups) if groups is not None else None
    return RuleFigures(int(len(labels)), float(right.mean()), float(np.mean(recalls)), float(accepted.mean()),
                       float(right[accepted].mean()) if accepted.any() else float("nan"), interval)


def class_pull(counts: np.ndarray) -> np.ndarray:
    """How strongly each class's weights are held at the base head's: stronger the fewer its cells."""
    return 1.0 + MIN_CELLS / np.maximum(counts, 0.5)


def fit_head(x: np.ndarray, y: np.ndarray, base: Head, strength: float,
             iterations: int = ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised features, penalised towards the base head.

    Returns weights and bias in the raw feature space (so the graph needs no standardisation)."""
    n_classes = base.weights.shape[1]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    a0 = base.weights * std[:, None]  # the base head, written for standardised features
    c0 = base.bias + mean @ base.weights
    a, c = a0.copy(), c0.copy()
    onehot = np.eye(n_classes)[y]
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weight = 1.0 / np.sqrt(np.maximum(counts[y], 1.0))  # square-root class balancing: lopsided sets
    weight /= weight.mean()
    pull = strength * class_pull(counts)
    m_a, v_a, m_c, v_c = np.zeros_like(a), np.zeros_like(a), np.zeros_like(c), np.zeros_like(c)
    rate, beta1, beta2 = 0.05, 0.9, 0.999
    for step in range(1, iterations + 1):
        g = (softmax(z @ a + c) - onehot) * weight[:, None] / len(y)
        grad_a = z.T @ g + pull * (a - a0)
        grad_c = g.sum(axis=0)
        m_a, v_a = beta1 * m_a + (1 - beta1) * grad_a, beta2 * v_a + (1 - beta2) * grad_a ** 2
        m_c, v_c = beta1 * m_c + (1 - beta1) * grad_c, beta2 * v_c + (1 - beta2) * grad_c ** 2
        correction = np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        a -= rate * correction * m_a / (np.sqrt(v_a) + 1e-8)
        c -= rate * correction * m_c / (np.sqrt(v_c) + 1e-8)
    return a / std[:, None], c - (mean / std) @ a


def fit_unfamiliar(x: np.ndarray, y: np.ndarray, min_cells: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Site class means (classes with at least `min_cells`) and a per-feature scale (pooled within-class SD)."""
    present = [k for k in np.unique(y) if (y == k).sum() >= min_cells]
    centroids = np.stack([x[y == k].mean(axis=0) for k in present])
    within = np.concatenate([x[y == k] - x[y == k].mean(axis=0) for k in present])
    std = within.std(axis=0)
    return centroids, 1.0 / (std + 0.1 * std.mean() + 1e-6)


def unfamiliar_scores(x: np.ndarray, centroids: np.ndarray, inverse_std: np.ndarray) -> np.ndarray:
    z = (x[:, None, :] - centroids[None]) * inverse_std
    return (z ** 2).sum(axis=2).min(axis=1) / x.shape[1]


def fold_ids(labels: np.ndarray, groups: np.ndarray, folds: int = FOLDS, seed: int = 0) -> tuple[np.ndarray, str]:
    """Folds by group (session / specimen) when there are enough groups, else stratified by class."""
    unique = np.unique(groups)
    if len(unique) >= 3:
        k = min(folds, len(unique))
        sizes = {g: int((groups == g).sum()) for g in unique}
        load = np.zeros(k)
        assign = {}
        for g in sorted(unique, key=lambda g: -sizes[g]):  # largest groups first, to the lightest fold
            f = int(load.argmin())
            assign[g] = f
            load[f] += sizes[g]
        return (np.array([assign[g] for g in groups]),
                f"{k}-fold; no session, specimen or image in two folds ({len(unique)} groups)")
    rng = np.random.default_rng(seed)
    ids = np.empty(len(labels), int)
    for k in np.unique(labels):
        where = np.flatnonzero(labels == k)
        rng.shuffle(where)
        ids[where] = np.arange(len(where)) % folds
    return ids, f"{folds}-fold, stratified by class (fewer than 3 sessions or specimens: cells of one may share folds)"


def check_enough(labels: np.ndarray, class_keys: list[str]) -> dict[str, int]:
    counts = {k: int((labels == i).sum()) for i, k in enumerate(class_keys)}
    usable = [k for k, n in counts.items() if n >= MIN_CELLS]
    if len(labels) < MIN_TOTAL or len(usable) < 2:
        listing = ", ".join(f"{k} {n}" for k, n in counts.items())
        raise AdaptationRefused(
            f"Too few verified cells to adapt: {len(labels)} cells ({listing}). Adaptation needs at least {MIN_TOTAL} "
            f"cells and at least two classes with {MIN_CELLS} or more.")
    return counts


def _out_of_fold(site: SiteSet, folds: np.ndarray, base: Head, strength: float):
    logits = np.zeros((len(site.labels), base.weights.shape[1]))
    ood = np.zeros(len(site.labels))
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        w, b = fit_head(site.features[train], site.labels[train], base, strength)
        logits[test] = site.features[test] @ w + b
        centroids, inverse_std = fit_unfamiliar(site.features[train], site.labels[train])
        ood[test] = unfamiliar_scores(site.features[test], centroids, inverse_std)
    return logits, ood


def adapt(site: SiteSet, base: Head, class_keys: list[str], base_review_threshold: float,
          base_ood_threshold: float | None, base_decision_threshold: float = 0.5,
          progress=None) -> Adaptation:
    """Fit on all the site's cells; every figure reported comes from out-of-fold predictions."""
    counts = check_enough(site.labels, class_keys)
    folds, fold_text = fold_ids(site.labels, site.groups)
    best = None
    for i, strength in enumerate(STRENGTHS):  # the pull towards the base head, by out-of-fold log-loss
        logits, ood = _out_of_fold(site, folds, base, strength)
        loss = nll(logits, site.labels)
        if best is None or loss < best[0]:
            best = (loss, strength, logits, ood)
        if progress:
            progress(i + 1, len(STRENGTHS) + 1)
    _, strength, logits, ood = best
    temperature = fit_temperature(logits, site.labels, SITE_TEMPERATURES, refine=False)
    probabilities = softmax(logits, temperature)
    ood_threshold = unfamiliar_threshold(ood)
    rare = tuple(class_keys.index(k) for k in rare_classes(counts))  # their calls go to Review
    review_threshold = 0.99
    for t in SITE_REVIEW_THRESHOLDS:  # the lowest threshold whose accepted calls are right enough
        fig = rule_figures(probabilities, ood, site.labels, t, ood_threshold, review_classes=rare)
        if fig.accepted_accuracy >= TARGET_ACCEPTED_ACCURACY:
            review_threshold = float(t)
            break
    rule = decide(probabilities, ood, review_threshold, ood_threshold, review_classes=rare)
    after = figures_of(rule.top, rule.accepted, site.labels, site.groups)
    before = rule_figures(site.base_probabilities, site.base_ood, site.labels, base_review_threshold,
                          base_ood_threshold, base_decision_threshold)
    weights, bias = fit_head(site.features, site.labels, base, strength)
    centroids, inverse_std = fit_unfamiliar(site.features, site.labels)
    if progress:
        progress(len(STRENGTHS) + 1, len(STRENGTHS) + 1)
    notes = []
    if after.balanced_accuracy < before.balanced_accuracy - 0.02:
        notes.append(f"Balanced accuracy falls ({before.balanced_accuracy:.1%} → {after.balanced_accuracy:.1%}): some "
                     "classes are called worse than by the base model. Verify more cells of the rare classes first.")
    if after.accepted_accuracy < TARGET_ACCEPTED_ACCURACY:
        notes.append(f"No review threshold reached {TARGET_ACCEPTED_ACCURACY:.0%} right among accepted calls; 0.99 is used.")
    return Adaptation(SiteHead(weights / temperature, bias / temperature, centroids, inverse_std), temperature,
                      review_threshold, ood_threshold, strength, before, after, counts,
                      rare_classes(counts), fold_text, notes)
