"""What classifying one image produces: plain data passed from the pipeline to the store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.core.inference.model import ModelInfo
from desktop.core.inference.slide import patch_position

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
           decision_threshold: float = 0.5) -> Decisions:
    """The one decision rule (app, CLI, verification, adaptation): two-class models call the
    second class at P >= decision_threshold, others take the most probable class."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        top = (probabilities[:, 1] >= decision_threshold).astype(int)
    else:
        top = probabilities.argmax(axis=1)
    unfamiliar = (np.asarray(ood) > ood_threshold if ood is not None and ood_threshold is not None
                  else np.zeros(len(probabilities), bool))
    # Review follows the called class's own probability: a two-class call made at P >= 0.64 can have
    # P < 0.5 for the class it names (the other class's max would have passed it as "confident").
    called = probabilities[np.arange(len(probabilities)), top] if len(probabilities) else np.zeros(0)
    return Decisions(top, unfamiliar, called < review_threshold)


def make_calls(info: ModelInfo, sources, probabilities: np.ndarray, ood: np.ndarray | None,
               hashes: list[str | None] | None = None) -> list[Call]:
    """Turn model outputs into calls, applying the model's own thresholds."""
    keys = info.class_keys
    # A model that answers NaN or infinity for an image has not called it: that image is left
    # out with the reason instead of landing in whatever class argmax picks.
    valid = np.isfinite(probabilities).all(axis=1)
    if ood is not None:
        valid &= np.isfinite(ood)
    probabilities = np.where(valid[:, None], probabilities, 0.0)
    rule = decide(probabilities, None if ood is None else np.where(valid, ood, 0.0), info.review_threshold,
                  info.ood_threshold, info.decision_threshold)
    calls = []
    for i, source in enumerate(sources):
        if not valid[i]:
            calls.append(Call(source.relative, source.size, source.mtime, content_hash=hashes[i] if hashes else None,
                              unreadable=INVALID_OUTPUT, review=True, review_reason=f"unreadable: {INVALID_OUTPUT}"))
            continue
        position = patch_position(source.relative)
        calls.append(Call(
            relative=source.relative, size=source.size, mtime=source.mtime,
            content_hash=hashes[i] if hashes else None, probabilities=tuple(float(v) for v in probabilities[i]),
            x=position[0] if position else None, y=position[1] if position else None,
            **ai_fields(keys, probabilities[i], rule, i, None if ood is None else float(ood[i])).__dict__,
        ))
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


def ai_fields(keys: list[str], p: np.ndarray, rule: Decisions, i: int, ood_score: float | None) -> AiFields:
    """Image i's call, confidence, runner-up and Review reason under the decided `rule`."""
    top = int(rule.top[i])
    order = np.argsort(-p)
    second = int(order[1]) if order[0] == top else int(order[0])
    unfamiliar = bool(rule.unfamiliar[i])
    reason = REVIEW_UNFAMILIAR if unfamiliar else (REVIEW_LOW_CONFIDENCE if rule.low_confidence[i] else "")
    return AiFields(keys[top], float(p[top]), keys[second], ood_score, unfamiliar, bool(reason), reason)


def slide_level_calls(info: ModelInfo, p_positive: np.ndarray, ood: list[float | None]) -> list[AiFields]:
    """The calls of a slide's patches from their slide-level P(positive) (`SlideStep.apply`),
    under the same decision rule as every other call."""
    probabilities = np.stack([1 - np.asarray(p_positive), np.asarray(p_positive)], axis=1)
    scores = None if all(v is None for v in ood) else np.array([0.0 if v is None else v for v in ood])
    rule = decide(probabilities, scores, info.review_threshold, info.ood_threshold, info.decision_threshold)
    return [ai_fields(info.class_keys, probabilities[i], rule, i, ood[i]) for i in range(len(probabilities))]
