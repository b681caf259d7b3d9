"""What classifying one image produces: plain data passed from the pipeline to the store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desktop.core.model import ModelInfo
from desktop.core.slide import patch_position

REVIEW_LOW_CONFIDENCE = "low confidence"
REVIEW_UNFAMILIAR = "unfamiliar image"


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


def make_calls(info: ModelInfo, sources, probabilities: np.ndarray, ood: np.ndarray | None,
               hashes: list[str | None] | None = None) -> list[Call]:
    """Turn model outputs into calls, applying the model's own thresholds."""
    keys = info.class_keys
    calls = []
    for i, source in enumerate(sources):
        p = probabilities[i]
        order = np.argsort(-p)
        top = int(order[0])
        if len(keys) == 2:
            # Two-class models decide on P(second class) against their decision threshold.
            top = int(p[1] >= info.decision_threshold)
        position = patch_position(source.relative)
        second = int(order[1]) if order[0] == top else int(order[0])
        score = float(ood[i]) if ood is not None else None
        unfamiliar = score is not None and info.ood_threshold is not None and score > info.ood_threshold
        confidence = float(p[top])
        low = float(p.max()) < info.review_threshold
        reason = REVIEW_UNFAMILIAR if unfamiliar else (REVIEW_LOW_CONFIDENCE if low else "")
        calls.append(Call(
            relative=source.relative, size=source.size, mtime=source.mtime,
            content_hash=hashes[i] if hashes else None, ai_class=keys[top],
            confidence=confidence, probabilities=tuple(float(v) for v in p), second_class=keys[second],
            ood_score=score, unfamiliar=unfamiliar, review=bool(reason), review_reason=reason,
            x=position[0] if position else None, y=position[1] if position else None,
        ))
    return calls
