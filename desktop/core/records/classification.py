"""What classifying a session checks beside the calls: a run whose first images are mostly
Unfamiliar stops (a foreign folder), and the model's slide-level step revises AI calls."""

from __future__ import annotations

import threading

import numpy as np

from desktop.core.inference.decision import AiFields, Call, slide_level_calls
from desktop.core.inference.items import parse_tile_name
from desktop.core.inference.model_info import ModelInfo
from desktop.core.records.domain import PatchCall

FOREIGN_SHARE = 0.8  # of the first batch flagged Unfamiliar: the folder is not what this model knows
FOREIGN_MIN_CELLS = 8


class ForeignGuard:
    """Watches the first calls of a run; stops it when most of them are Unfamiliar."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.seen = self.unfamiliar = 0
        self.verdict = ""

    def look(self, calls: list[Call]) -> None:
        if self.seen >= FOREIGN_MIN_CELLS:
            return
        readable = [c for c in calls if not c.unreadable]
        self.seen += len(readable)
        self.unfamiliar += sum(c.unfamiliar for c in readable)
        if self.seen >= FOREIGN_MIN_CELLS and self.unfamiliar >= FOREIGN_SHARE * self.seen:
            self.verdict = f"{self.unfamiliar} of the first {self.seen} images"
            self.cancel.set()


def slide_step_revisions(calls: list[PatchCall], info: ModelInfo) -> list[tuple[PatchCall, AiFields]]:
    """The AI calls the model's slide-level step changes, slide by slide: (call, its revised fields).
    A call the technician has seen (final or confirmed) is never revised."""
    step = info.slide_step
    slides: dict[str, list[PatchCall]] = {}
    for call in calls:
        tile = parse_tile_name(call.file)
        slides.setdefault(tile.source if tile else "", []).append(call)
    revised = []
    for slide in slides.values():
        p_slide = step.apply(np.array([c.p_positive for c in slide]), [(c.x, c.y) for c in slide], info.patch)
        fields = slide_level_calls(info, p_slide, [c.ood_score for c in slide])
        revised += [(c, f) for c, f in zip(slide, fields)
                    if not c.seen and (c.ai_class, c.review, round(c.confidence, 9)) != (f.ai_class, f.review,
                                                                                        round(f.confidence, 9))]
    return revised
