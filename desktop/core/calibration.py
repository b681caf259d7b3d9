"""Calibration and the decision rule's thresholds, in numpy alone: the trainer calibrates a model
with these functions and site adaptation recalibrates a site head with the same ones, so the app,
the trainer and adaptation can never disagree on what a temperature or a threshold means.

The decision rule itself (two classes at the decision threshold, else the top class; Review below
the review threshold or above the Unfamiliar threshold) is `inference.decision.decide`."""

from __future__ import annotations

import numpy as np

# Temperatures searched: a model's on thousands of validation images (a wide log grid, then a
# golden-section refine) and a site head's on a lab's few hundred cells (a narrower grid alone:
# a fine optimum on so few cells would be noise).
MODEL_TEMPERATURES = (0.25, 8.0, 60)
SITE_TEMPERATURES = (0.5, 4.0, 41)
UNFAMILIAR_PERCENTILE = 99.0  # the Unfamiliar threshold flags ≈1% of in-domain images by design
REVIEW_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99)  # the trade-off table's rows
SITE_REVIEW_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.40, 0.991, 0.01), 2))  # site models: a finer grid


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels at `temperature`."""
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def temperature_grid(low: float, high: float, steps: int) -> np.ndarray:
    return np.exp(np.linspace(np.log(low), np.log(high), steps))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, grid: tuple[float, float, int] = MODEL_TEMPERATURES,
                    refine: bool = True) -> float:
    """The temperature that minimises NLL: the best of `grid`, then (with `refine`) a golden-section search near it."""
    candidates = temperature_grid(*grid)
    best = candidates[int(np.argmin([nll(logits, labels, t) for t in candidates]))]
    if not refine:
        return float(best)
    lo, hi = best / 1.2, best * 1.2
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, a) < nll(logits, labels, b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def review_tradeoff(probs: np.ndarray, labels: np.ndarray, predictions: np.ndarray | None = None,
                    thresholds: tuple[float, ...] = REVIEW_THRESHOLDS) -> list[dict]:
    """For each threshold: share of calls sent to Review and accuracy of the calls kept."""
    predictions = probs.argmax(axis=1) if predictions is None else predictions
    confidence = probs.max(axis=1)
    rows = []
    for t in thresholds:
        kept = confidence >= t
        accuracy = float((predictions[kept] == labels[kept]).mean()) if kept.any() else float("nan")
        rows.append({"threshold": t, "review_share": float(1 - kept.mean()), "accepted_accuracy": accuracy})
    return rows


def choose_review_threshold(rows: list[dict], target_accuracy: float, max_review_share: float = 1.0) -> float:
    """Lowest threshold whose kept calls reach the target accuracy, within the Review budget."""
    for row in rows:
        if row["accepted_accuracy"] >= target_accuracy and row["review_share"] <= max_review_share:
            return row["threshold"]
    affordable = [r for r in rows if r["review_share"] <= max_review_share]
    return affordable[-1]["threshold"] if affordable else rows[0]["threshold"]


def unfamiliar_threshold(scores: np.ndarray, percentile: float = UNFAMILIAR_PERCENTILE) -> float:
    """The Unfamiliar score above which a call goes to Review: a high percentile of in-domain scores."""
    return float(np.percentile(scores, percentile))


def balanced_accuracy_threshold(p_positive: np.ndarray, labels: np.ndarray) -> float:
    """Decision threshold on P(positive) that maximises balanced accuracy on validation."""
    best_t, best = 0.5, -1.0
    for t in np.linspace(0.05, 0.95, 91):
        call = p_positive >= t
        tpr = call[labels == 1].mean() if (labels == 1).any() else 0.0
        tnr = (~call[labels == 0]).mean() if (labels == 0).any() else 0.0
        score = (tpr + tnr) / 2
        if score > best + 1e-9:
            best_t, best = float(t), score
    return round(best_t, 3)
