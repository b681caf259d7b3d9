"""Patches back on their slides: per-patient IDC fractions and probability maps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from desktop.core.inference.slide import PatchGrid, heat_map
from desktop.core.inference.slide_step import SlideStep
from trainer.data import patch_xy

COMPLETE_SLIDE_PATCHES = 300  # a patient with more patches than this is a complete slide


def complete_slides(patients: dict, order=None) -> list[str]:
    """The patients of `patients` (idc_patients' result) whose slide is complete, in `order`
    (patient ids; default: the dict's own)."""
    return [p for p in (patients if order is None else order)
            if patients.get(p, {}).get("n", 0) > COMPLETE_SLIDE_PATCHES]


def fraction_mae(patients: dict, ids: list[str]) -> float:
    """Mean absolute error of the predicted IDC fraction over the given patients."""
    return float(np.mean([abs(patients[p]["predicted"] - patients[p]["true"]) for p in ids]))


def idc_patients(items: list, probs: np.ndarray, threshold: float, labels: np.ndarray) -> dict:
    """Per-patient IDC fraction, predicted vs true (what a pathologist reads off the slide).

    `items` are the decoded split's items, row for row with `probs` and `labels`."""
    if not len(items) == len(probs) == len(labels):
        raise ValueError(f"{len(items)} items, {len(probs)} probabilities, {len(labels)} labels")
    per: dict[str, list] = {}
    for item, p, y in zip(items, probs, labels, strict=True):
        per.setdefault(item.group, []).append((p >= threshold, y))
    return {pid: {"n": len(v), "true": float(np.mean([t for _, t in v])), "predicted": float(np.mean([c for c, _ in v]))}
            for pid, v in per.items()}


def idc_maps(items: list, p_idc: np.ndarray, patients: list[str], patch: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per-patient maps of P(IDC) and truth on the app's own grid (`desktop.core.inference.slide`);
    `items` row for row with `p_idc`, `patch` the tile's side and spacing."""
    maps = []
    for pid in patients:
        cells = [(patch_xy(i.path), p, i.label) for i, p in zip(items, p_idc, strict=True) if i.group == pid]
        cells = [c for c in cells if c[0]]
        if not cells:
            continue
        offsets = [offset for offset, _, _ in cells]
        grid = PatchGrid(patch, patch).fitted(offsets)
        predicted = heat_map(offsets, [p for _, p, _ in cells], grid)
        truth = heat_map(offsets, [float(label) for _, _, label in cells], grid)
        maps.append((pid, predicted, truth))
    return maps


def slide_level(step: SlideStep, patch: int) -> Callable[[np.ndarray, list], np.ndarray]:
    """The app's slide-level step as the trainer applies it: per patient (one slide each),
    `(P(IDC), items) -> P(IDC)` row for row; patches without a position keep theirs."""
    def apply(p_idc: np.ndarray, items: list) -> np.ndarray:
        out = np.asarray(p_idc, dtype=np.float64).copy()
        by_patient: dict[str, list[int]] = {}
        offsets = [patch_xy(i.path) for i in items]
        for row, item in enumerate(items):
            if offsets[row] is not None:
                by_patient.setdefault(item.group, []).append(row)
        for rows in by_patient.values():
            out[rows] = step.apply(out[rows], [offsets[r] for r in rows], PatchGrid(patch, patch))
        return out
    return apply
