"""What classifying one image produces: plain data passed from the pipeline to the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from desktop.core.inference.items import Item
from desktop.core.inference.model_info import ModelInfo
from desktop.core.inference.quantification import ReviewBand
from desktop.core.inference.slide import item_offset

REVIEW_LOW_CONFIDENCE = "low confidence"
REVIEW_UNFAMILIAR = "unfamiliar image"
INVALID_OUTPUT = "no valid answer from the model (not a number)"


@dataclass
class Call:
    """The model's call on one image (or the reason it could not make one)."""

    relative: str
    size: int
    mtime: float
    content_hash: str | None = None
    ai_class: str | None = None
    confidence: float = 0.0
    probabilities: tuple[float, ...] = ()
    second_class: str | None = None
    ood_score: float | None = None
    unfamiliar: bool = False
    review: bool = False
    review_reason: str = ""
    unreadable: str = ""  # reason, when the image could not be used
    x: int | None = None
    y: int | None = None


@dataclass(frozen=True)
class Decisions:
    """The decision rule applied to a batch: the call, and why a cell goes to Review."""

    top: np.ndarray  # class index per image
    unfamiliar: np.ndarray  # bool: Unfamiliar score above the model's threshold
    low_confidence: np.ndarray  # bool: max probability below the review threshold

    @property
    def accepted(self) -> np.ndarray:
        return ~(self.unfamiliar | self.low_confidence)


def decide(probabilities: np.ndarray, ood: np.ndarray | None, review_threshold: float, ood_threshold: float | None,
           decision_threshold: float = 0.5, review_band: ReviewBand | None = None,
           review_classes: tuple[int, ...] = ()) -> Decisions:
    """The one decision rule (app, CLI, verification, adaptation): two-class models call the
    second class at P >= decision_threshold, others take the most probable class. A two-class model
    with a `review_band` sends the calls whose P(second class) lies in it to Review, on both sides of
    the threshold, instead of those below `review_threshold`. Calls of `review_classes` (a site model's
    classes with too few verified cells to trust) always go to Review."""
    rule = _decide(probabilities, ood, review_threshold, ood_threshold, decision_threshold, review_band)
    if not review_classes:
        return rule
    return Decisions(rule.top, rule.unfamiliar, rule.low_confidence | np.isin(rule.top, list(review_classes)))


def _decide(probabilities: np.ndarray, ood: np.ndarray | None, review_threshold: float, ood_threshold: float | None,
            decision_threshold: float, review_band: ReviewBand | None) -> Decisions:
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        top = (probabilities[:, 1] >= decision_threshold).astype(int)
    else:
        top = probabilities.argmax(axis=1)
    unfamiliar = (np.asarray(ood) > ood_threshold if ood is not None and ood_threshold is not None
                  else np.zeros(len(probabilities), bool))
    # Review follows the called class's own probability: a two-class call made at P >= 0.64 can have
    # P < 0.5 for the class it names (the other class's max would have passed it as "confident").
    if review_band is not None and probabilities.shape[1] == 2:
        return Decisions(top, unfamiliar, review_band.contains(probabilities[:, 1]))
    called = probabilities[np.arange(len(probabilities)), top] if len(probabilities) else np.zeros(0)
    return Decisions(top, unfamiliar, called < review_threshold)


def decide_for(info: ModelInfo, probabilities: np.ndarray, ood: np.ndarray | None) -> Decisions:
    """`decide` with every threshold the model's metadata declares."""
    return decide(probabilities, ood, info.review_threshold, info.ood_threshold, info.decision_threshold,
                  info.review_band, tuple(info.class_keys.index(k) for k in info.review_classes))


def review_by_rule(info: ModelInfo, ai_class: str | None, confidence: float, unfamiliar: bool) -> bool:
    """The Review flag the decision rule gives a stored AI call (its class and the probability it was
    decided on): what sign-off checks each cell's flag against."""
    if unfamiliar or ai_class in info.review_classes:
        return True
    keys = info.class_keys
    if info.review_band is not None and len(keys) == 2:
        p_positive = confidence if ai_class == keys[1] else 1.0 - confidence
        return bool(info.review_band.contains(np.array([p_positive]))[0])
    return confidence < info.review_threshold


def make_calls(info: ModelInfo, sources: Sequence[Item], probabilities: np.ndarray, ood: np.ndarray | None,
               hashes: list[str | None] | None = None) -> list[Call]:
    """Turn model outputs into calls, applying the model's own thresholds (the rule once per
    batch, in numpy; only building the calls is per image)."""
    # A model that answers NaN or infinity for an image has not called it: that image is left
    # out with the reason instead of landing in whatever class argmax picks.
    valid = np.isfinite(probabilities).all(axis=1)
    if ood is not None:
        valid &= np.isfinite(ood)
    probabilities = np.where(valid[:, None], probabilities, 0.0)
    scores = None if ood is None else np.where(valid, ood, 0.0)
    rule = decide_for(info, probabilities, scores)
    fields = batch_fields(info.class_keys, probabilities, rule, None if ood is None else [float(v) for v in ood])
    hashes = hashes or [None] * len(probabilities)
    calls = []
    for source, ok, p, f, digest in zip(sources, valid.tolist(), probabilities.tolist(), fields, hashes):
        if not ok:
            calls.append(Call(source.relative, source.size, source.mtime, content_hash=digest,
                              unreadable=INVALID_OUTPUT, review=True, review_reason=f"unreadable: {INVALID_OUTPUT}"))
            continue
        ai_class, confidence, second, score, unfamiliar, review, reason = f
        calls.append(Call(source.relative, source.size, source.mtime, digest, ai_class, confidence, tuple(p), second,
                          score, unfamiliar, review, reason, "", *(item_offset(source) or (None, None))))
    return calls


@dataclass(frozen=True)
class AiFields:
    """The parts of a call the decision rule sets (what a slide-level step may revise)."""

    ai_class: str
    confidence: float
    second_class: str
    ood_score: float | None
    unfamiliar: bool
    review: bool
    review_reason: str


def batch_fields(keys: list[str], probabilities: np.ndarray, rule: Decisions, ood: list[float | None] | None) -> zip:
    """Per image, the fields of `AiFields` in order: call, confidence, runner-up, Unfamiliar score,
    Unfamiliar, Review, Review reason under the decided `rule`, for a whole batch at once."""
    p = np.asarray(probabilities)
    n = len(p)
    top = np.asarray(rule.top, dtype=np.int64)
    order = np.argsort(-p, axis=1)  # the same sort, row by row, as one image's argsort (ties included)
    second = np.where(order[:, 0] == top, order[:, 1], order[:, 0]) if n else top
    unfamiliar = np.asarray(rule.unfamiliar, bool)
    reasons = np.where(unfamiliar, REVIEW_UNFAMILIAR, np.where(rule.low_confidence, REVIEW_LOW_CONFIDENCE, "")).tolist()
    return zip([keys[t] for t in top.tolist()], p[np.arange(n), top].tolist(), [keys[t] for t in second.tolist()],
               ood if ood is not None else [None] * n, unfamiliar.tolist(), [bool(r) for r in reasons], reasons)


def slide_level_calls(info: ModelInfo, p_positive: np.ndarray, ood: list[float | None]) -> list[AiFields]:
    """The calls of a slide's patches from their slide-level P(positive) (`SlideStep.apply`),
    under the same decision rule as every other call."""
    probabilities = np.stack([1 - np.asarray(p_positive), np.asarray(p_positive)], axis=1)
    scores = None if all(v is None for v in ood) else np.array([0.0 if v is None else v for v in ood])
    rule = decide_for(info, probabilities, scores)
    return [AiFields(*f) for f in batch_fields(info.class_keys, probabilities, rule, list(ood))]
