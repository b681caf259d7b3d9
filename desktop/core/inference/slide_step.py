"""The slide-level step of a patch model: each patch's P(IDC) is blended with its neighbours'
on the slide grid before the decision rule calls it.

Carcinoma is a region, not a single 50 px patch: a patch whose eight neighbours are all
normal is more likely a false call than one inside a tumour. The step is declared in the
model's metadata (`slide_step`), so the trainer chose its threshold on what the app runs,
and the core runs it for the CLI and the GUI alike, over every patch of the slide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from desktop.core.inference.slide import PatchGrid

KIND = "neighbour-logit-mean"


class SlideStepError(ValueError):
    """The metadata's `slide_step` is not one this app can run."""


@dataclass(frozen=True)
class SlideStep:
    """Blend: logit' = (1 - weight) * own logit + weight * mean logit of the neighbours present
    within `radius` grid steps. A patch with no neighbour keeps its own probability."""

    radius: int = 1
    weight: float = 0.5

    def describe(self) -> str:
        return f"each patch's P(IDC) blended {self.weight:.0%} with its neighbours' within {self.radius} patch(es)"

    def as_metadata(self) -> str:
        return json.dumps({"kind": KIND, "radius": self.radius, "weight": self.weight})

    def apply(self, p_positive: np.ndarray, offsets: list[tuple[int, int]], grid: PatchGrid) -> np.ndarray:
        """The slide-level P(positive) of each patch (same order); `offsets` are slide pixels."""
        p = np.asarray(p_positive, dtype=np.float64)
        if len(p) == 0 or self.weight == 0:
            return p.copy()
        xy = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        places = (xy - xy.min(axis=0)) // grid.stride  # grid.fitted(offsets).place(o) for every o at once
        rows, cols = places[:, 1].max() + 1, places[:, 0].max() + 1
        logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
        r = self.radius
        total = np.zeros((rows + 2 * r, cols + 2 * r))
        present = np.zeros_like(total)
        # duplicates at one place (a patch cut twice) are averaged, not dropped
        np.add.at(total, (places[:, 1] + r, places[:, 0] + r), logit)
        np.add.at(present, (places[:, 1] + r, places[:, 0] + r), 1.0)
        window_sum = np.zeros((rows, cols))
        window_n = np.zeros((rows, cols))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                window_sum += total[r + dy:r + dy + rows, r + dx:r + dx + cols]
                window_n += present[r + dy:r + dy + rows, r + dx:r + dx + cols]
        at = (places[:, 1], places[:, 0])
        neighbour_n = window_n[at] - 1  # minus the patch itself
        neighbour_sum = window_sum[at] - logit
        blended = np.where(neighbour_n > 0,
                           (1 - self.weight) * logit + self.weight * neighbour_sum / np.maximum(neighbour_n, 1), logit)
        return 1.0 / (1.0 + np.exp(-blended))


def parse_slide_step(value: str | None) -> SlideStep | None:
    """The metadata value (JSON), or None when the model has no slide-level step."""
    if value is None or value == "":
        return None
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as exc:
        raise SlideStepError(f"slide_step is not JSON ({exc.msg})") from exc
    if not isinstance(spec, dict) or spec.get("kind") != KIND:
        raise SlideStepError(f"slide_step kind {spec.get('kind') if isinstance(spec, dict) else spec!r} is unknown "
                             f"to this app (it runs {KIND!r})")
    radius, weight = spec.get("radius", 1), spec.get("weight", 0.5)
    if not isinstance(radius, int) or not 1 <= radius <= 5:
        raise SlideStepError(f"slide_step radius must be a whole number 1-5, not {radius!r}")
    if not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise SlideStepError(f"slide_step weight must be between 0 and 1, not {weight!r}")
    return SlideStep(radius, float(weight))
