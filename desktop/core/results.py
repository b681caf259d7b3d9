"""What classifying one image produces: plain data passed from the pipeline to the store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.core.model import ModelInfo
from desktop.core.slide import patch_position

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
    return Decisions(top, unfamiliar, probabilities.max(axis=1) < review_threshold)


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
        p = probabilities[i]
        order = np.argsort(-p)
        top = int(rule.top[i])
        position = patch_position(source.relative)
        second = int(order[1]) if order[0] == top else int(order[0])
        score = float(ood[i]) if ood is not None else None
        unfamiliar = bool(rule.unfamiliar[i])
        confidence = float(p[top])
        reason = REVIEW_UNFAMILIAR if unfamiliar else (REVIEW_LOW_CONFIDENCE if rule.low_confidence[i] else "")
        calls.append(Call(
            relative=source.relative, size=source.size, mtime=source.mtime,
            content_hash=hashes[i] if hashes else None, ai_class=keys[top],
            confidence=confidence, probabilities=tuple(float(v) for v in p), second_class=keys[second],
            ood_score=score, unfamiliar=unfamiliar, review=bool(reason), review_reason=reason,
            x=position[0] if position else None, y=position[1] if position else None,
        ))
    return calls
