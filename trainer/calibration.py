"""Temperature scaling, expected calibration error, and the Review threshold trade-off."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises validation NLL (coarse grid, then a golden-section refine)."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 60))
    best = grid[int(np.argmin([nll(logits, labels, t) for t in grid]))]
    lo, hi = best / 1.2, best * 1.2
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, a) < nll(logits, labels, b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE (top-label, equal-width bins) and the per-bin table for the reliability diagram."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (confidence > lo) & (confidence <= hi)
        if not mask.any():
            continue
        acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
        ece += mask.mean() * abs(acc - conf)
        table.append({"lo": float(lo), "hi": float(hi), "n": int(mask.sum()), "accuracy": acc, "confidence": conf})
    return float(ece), table


def review_tradeoff(probs: np.ndarray, labels: np.ndarray, predictions: np.ndarray | None = None) -> list[dict]:
    """For each threshold: share of calls sent to Review and accuracy of the calls kept."""
    predictions = probs.argmax(axis=1) if predictions is None else predictions
    confidence = probs.max(axis=1)
    rows = []
    for t in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99):
        kept = confidence >= t
        accuracy = float((predictions[kept] == labels[kept]).mean()) if kept.any() else float("nan")
        rows.append({"threshold": t, "review_share": float(1 - kept.mean()), "accepted_accuracy": accuracy})
    return rows


def choose_review_threshold(rows: list[dict], target_accuracy: float, max_review_share: float) -> float:
    """Lowest threshold whose kept calls reach the target accuracy, within the Review budget."""
    for row in rows:
        if row["accepted_accuracy"] >= target_accuracy and row["review_share"] <= max_review_share:
            return row["threshold"]
    affordable = [r for r in rows if r["review_share"] <= max_review_share]
    return affordable[-1]["threshold"] if affordable else rows[0]["threshold"]


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


def accepted_curve(correct: np.ndarray, confidence: np.ndarray, unfamiliar: np.ndarray) -> list[dict]:
    """Accuracy of accepted calls vs share accepted, sweeping the confidence bar."""
    rows = []
    for t in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999):
        accepted = (confidence >= t) & ~unfamiliar
        acc = float(correct[accepted].mean()) if accepted.any() else float("nan")
        rows.append({"threshold": t, "accepted_share": float(accepted.mean()), "accepted_accuracy": acc})
    return rows


def decide(probs: np.ndarray, decision: float) -> np.ndarray:
    """The shipped decision rule: two classes at the model's threshold, otherwise the top class."""
    return (probs[:, 1] >= decision).astype(int) if probs.shape[1] == 2 else probs.argmax(1)


@dataclass(frozen=True)
class Calibration:
    """What the val split decides: temperature, the decision and review thresholds."""

    temperature: float
    decision_threshold: float  # P(positive) for two classes; 0.5 (unused) otherwise
    review_threshold: float
    val_accuracy: float  # the shipped rule on clean val images: the figure runs are chosen by
    tradeoff: list[dict]  # review share vs accepted accuracy, per threshold
    # the app's slide-level step, (P(positive), items) -> P(positive) row for row; None: none
    slide: Callable[[np.ndarray, list], np.ndarray] | None = field(default=None, compare=False)

    def probabilities(self, logits: np.ndarray, items: list | None = None) -> np.ndarray:
        """What the app decides on: temperature-scaled, then (given the images' `items`, for
        their slide positions) through the slide-level step."""
        probs = softmax(logits, self.temperature)
        return with_slide_step(probs, items, self.slide)

    def calls(self, probabilities: np.ndarray) -> np.ndarray:
        """The shipped rule on what `probabilities` returned (so the slide step runs once)."""
        return decide(probabilities, self.decision_threshold)


def with_slide_step(probs: np.ndarray, items: list | None, slide) -> np.ndarray:
    if slide is None or items is None:
        return probs
    p = slide(probs[:, 1], items)
    return np.stack([1 - p, p], axis=1)


def calibrate(val_logits: np.ndarray, y_val: np.ndarray, two_class_threshold: bool, review_accuracy: float,
              review_budget: float, slide=None, val_items: list | None = None) -> Calibration:
    """Temperature by NLL, the IDC threshold by balanced accuracy, the review bar by the budget: all on val.
    With a slide-level step, the thresholds are chosen on its output, as the app decides on it."""
    temperature = fit_temperature(val_logits, y_val)
    probs = with_slide_step(softmax(val_logits, temperature), val_items, slide)
    decision = balanced_accuracy_threshold(probs[:, 1], y_val) if two_class_threshold else 0.5
    preds = decide(probs, decision)
    tradeoff = review_tradeoff(probs, y_val, preds)
    review = choose_review_threshold(tradeoff, review_accuracy, review_budget)
    return Calibration(temperature, decision, review, float((preds == y_val).mean()), tradeoff, slide)
