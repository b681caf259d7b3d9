"""The trainer's calibration run: temperature, decision and review thresholds chosen on val with
the core's numpy functions (`desktop.core.calibration`, also used by site adaptation) and the
app's own decision rule; expected calibration error and the accepted-calls curve for the card."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from desktop.core.calibration import (
    balanced_accuracy_threshold,
    choose_review_threshold,
    fit_temperature,
    review_tradeoff,
    softmax,
)
from desktop.core.inference.decision import decide as decision_rule


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


def accepted_curve(correct: np.ndarray, confidence: np.ndarray, unfamiliar: np.ndarray) -> list[dict]:
    """Accuracy of accepted calls vs share accepted, sweeping the confidence bar."""
    rows = []
    for t in (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999):
        accepted = (confidence >= t) & ~unfamiliar
        acc = float(correct[accepted].mean()) if accepted.any() else float("nan")
        rows.append({"threshold": t, "accepted_share": float(accepted.mean()), "accepted_accuracy": acc})
    return rows


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


def decide(probs: np.ndarray, decision: float) -> np.ndarray:
    """The app's decision rule's call (two classes at `decision`, otherwise the top class)."""
    return decision_rule(probs, None, 0.0, None, decision).top


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
