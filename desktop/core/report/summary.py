"""Counts and the assay summaries: the blood differential with flags, and the IDC fraction."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from desktop.core.inference.contract import NRBC_GROUP, PLATELET_GROUP, WBC_GROUP
from desktop.core.inference.items import parse_tile_name
from desktop.core.inference.model_info import ModelInfo
from desktop.core.inference.quantification import FractionEstimate, estimate_fraction, untested_estimator
from desktop.core.inference.slide import PatchGrid, cell_offset, heat_map
from desktop.core.records.domain import DEFAULT_TARGET_WBC, Cell


@dataclass(frozen=True)
class ReferenceIntervals:
    intervals: dict[str, tuple[float, float]]
    source: str

    @classmethod
    def load(cls, path: Path | None = None) -> ReferenceIntervals:
        """The intervals in `path`, else the lab policy's, else the bundled ones (read once per run)."""
        from desktop.core.policy import lab_policy

        path = path or lab_policy().reference_intervals
        if path is None:
            return _bundled_intervals()
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls({k: (float(v[0]), float(v[1])) for k, v in data["intervals"].items()}, data.get("source", ""))


@lru_cache(maxsize=1)
def _bundled_intervals() -> ReferenceIntervals:
    from desktop.core.resources import resource

    return ReferenceIntervals.load(resource("reference_intervals.json"))


@dataclass
class Counts:
    """AI and final counts per class, and what is left out of the final count."""

    ai: dict[str, int]
    final: dict[str, int]
    total: int
    unreadable: int
    pending_review: int  # Review cells not yet confirmed: not counted in `final`
    unfamiliar_excluded: int  # of those, flagged Unfamiliar
    confirmed_review: int
    review_total: int
    missing: int = 0  # files no longer in the folder: kept in the session, left out of every count
    left_out: dict[str, int] = field(default_factory=dict)  # unreadable items per kind of reason, most first


def reason_kind(reason: str) -> str:
    """What a reason says without its details: 'image too large (12000x12000 pixels)' -> 'image too large'."""
    return reason.split(" (", 1)[0]


def counts(cells: list[Cell], info: ModelInfo) -> Counts:
    ai: Counter = Counter()
    final: Counter = Counter()
    left_out: Counter = Counter()
    pending = unfamiliar = confirmed = review_total = unreadable = missing = 0
    for c in cells:
        if c.missing:
            missing += 1
            continue
        if c.unreadable:
            unreadable += 1
            left_out[reason_kind(c.unreadable)] += 1
            continue
        ai[c.ai_class] += 1
        if c.review:
            review_total += 1
            confirmed += c.confirmed
        if c.needs_review:
            pending += 1
            unfamiliar += c.unfamiliar
        if c.counted:  # the one rule of what is counted, and the one rule of the call
            final[c.call] += 1
    keys = info.class_keys
    return Counts({k: ai.get(k, 0) for k in keys}, {k: final.get(k, 0) for k in keys}, len(cells) - missing,
                  unreadable, pending, unfamiliar, confirmed, review_total, missing, dict(left_out.most_common()))


def left_out_line(tally: Counts) -> str:
    """'2 not a regular file, 1 unsupported format: GIF': what was left out, and why."""
    return ", ".join(f"{n} {kind}" for kind, n in tally.left_out.items())


@dataclass
class Differential:
    wbc: int
    platelets: int
    nrbc_per_100_wbc: float | None
    target: int
    excluded: int
    unfamiliar_excluded: int
    warnings: list[str] = field(default_factory=list)


def flag_of(value: float | None, interval: tuple[float, float] | None) -> str:
    """'H' above, 'L' below the reference interval, '' inside it or without one."""
    if value is None or interval is None:
        return ""
    if value > interval[1] + 1e-9:
        return "H"
    if value < interval[0] - 1e-9:
        return "L"
    return ""


def class_percentages(per_class: dict[str, int], info: ModelInfo) -> dict[str, float | None]:
    """The reported value of each class from its count: WBC classes as % of WBC, NRBC per 100
    WBC, platelets none (counted apart); for other assays, % of all classified images."""
    groups = {c.key: c.group for c in info.classes}
    if any(g == WBC_GROUP for g in groups.values()):
        wbc = sum(n for k, n in per_class.items() if groups.get(k) == WBC_GROUP)
        return {k: (100.0 * per_class.get(k, 0) / wbc if wbc else None) if groups[k] in (WBC_GROUP, NRBC_GROUP) else None
                for k in groups}
    total = sum(per_class.values())
    return {k: 100.0 * per_class.get(k, 0) / total if total else None for k in groups}


def differential(cells: list[Cell], info: ModelInfo, target: int = DEFAULT_TARGET_WBC,
                 tally: Counts | None = None) -> Differential:
    """WBC classes as % of all WBC, erythroblasts per 100 WBC, platelets apart.

    Only final calls count: Review cells wait until the technician confirms them.
    """
    tally = tally or counts(cells, info)
    groups = {c.key: c.group for c in info.classes}
    wbc = sum(n for k, n in tally.final.items() if groups[k] == WBC_GROUP)
    nrbc = sum(n for k, n in tally.final.items() if groups[k] == NRBC_GROUP)
    platelets = sum(n for k, n in tally.final.items() if groups[k] == PLATELET_GROUP)
    nrbc_per_100 = 100.0 * nrbc / wbc if wbc else None
    warnings = []
    if wbc < target:
        warnings.append(f"Only {wbc} white cells counted; the target is {target}. Percentages are imprecise.")
    warnings += count_warnings(tally)
    return Differential(wbc, platelets, nrbc_per_100, target, tally.pending_review, tally.unfamiliar_excluded,
                        warnings)


def count_warnings(tally: Counts, noun: str = "cell(s)", review_counted: bool = False) -> list[str]:
    """What every assay's report warns about: cells (or patches) waiting for review, unreadable and missing files.
    `review_counted`: the assay's figure counts Review items at the model's call until reviewed (IDC)."""
    warnings = []
    if tally.pending_review and review_counted:
        warnings.append(f"{tally.pending_review} {noun} await review; until reviewed they are counted at the AI's call"
                        + (f" ({tally.unfamiliar_excluded} flagged Unfamiliar)." if tally.unfamiliar_excluded else "."))
    elif tally.pending_review:
        warnings.append(f"{tally.pending_review} {noun} in Review are not counted until confirmed"
                        + (f" ({tally.unfamiliar_excluded} flagged Unfamiliar)." if tally.unfamiliar_excluded else "."))
    if tally.unreadable:
        warnings.append(f"{tally.unreadable} file(s) could not be read: {left_out_line(tally)}.")
    if tally.missing:
        warnings.append(f"{tally.missing} file(s) are no longer in the folder and are not counted.")
    return warnings


@dataclass
class SlideSummary:
    """The slide's IDC fraction over every tissue patch (the technician's call where given, else the
    model's: Review patches are counted at the model's call until reviewed, never left out), its 95%
    interval, the model's own figure before review beside it, and their maps on the slide's patch grid."""

    patches: int  # every readable, present patch, Review included
    idc: int  # of those, called IDC (the technician's call where given, else the model's)
    fraction: float | None
    pending_review: int  # of `patches`, counted at the model's call until reviewed
    heat: np.ndarray  # AI only: the P(IDC) each AI call was decided on, per patch position; NaN where no patch
    calls: np.ndarray  # final call per position: 1 IDC, 0 not, 2 awaiting review, NaN none
    ai_patches: int  # every classified patch, Review included
    ai_idc: int  # of those, called IDC by the model
    ai_fraction: float | None
    grid: PatchGrid  # the maps' grid: map[row, col] is the patch at grid.offset(col, row)
    interval: tuple[float, float] | None = None  # 95% interval of `fraction`


def picture_only(slide: SlideSummary, mosaic: np.ndarray, cell_px: int) -> SlideSummary:
    """A whole slide before its first call: empty maps the mosaic's size, so its picture shows alone."""
    empty = np.full((mosaic.shape[0] // cell_px, mosaic.shape[1] // cell_px), np.nan, np.float32)
    return replace(slide, heat=empty, calls=empty)


def placed_cells(cells: list[Cell]) -> list[tuple[Cell, tuple[int, int]]]:
    """The slide's usable patches with their slide offsets (unreadable, missing and unplaced ones left out)."""
    placed = []
    for c in cells:
        offset = None if c.unreadable or c.missing else cell_offset(c)
        if offset is not None:
            placed.append((c, offset))
    return placed


def slide_grid(cells: list[Cell], info: ModelInfo) -> PatchGrid:
    """The model's patch grid, anchored at the slide's top-left patch (patch files, whose offsets are
    the source slide's) or at the image's own corner (tiles of a whole slide or tissue image, so the
    slide's picture can lie under the map before its first tile is called): the heat map, the mosaic
    and a click on the map all use this one."""
    placed = placed_cells(cells)
    if all(parse_tile_name(c.file) is not None for c, _ in placed):
        return info.patch
    return info.patch.fitted([offset for _, offset in placed])


def decided_p_positive(cell: Cell, positive: str) -> float:
    """The P(positive class) the AI call was decided on: the model's, or after the model's
    slide-level step its neighbours' blend, which is what `confidence` holds then. What the
    gallery label and the AI-only map show, so they never contradict the call."""
    if not cell.probabilities or cell.ai_class is None:
        return float("nan")
    return cell.confidence if cell.ai_class == positive else 1.0 - cell.confidence


def slide_fraction(cells: list[Cell], info: ModelInfo, pending_review: int) -> FractionEstimate:
    """The slide's fraction of positive patches over every readable, present patch, with its 95% interval
    (the model's `fraction_estimator`, or the binomial part alone at its test error rate)."""
    positive = info.class_keys[1]
    patches = [c for c in cells if not c.unreadable and not c.missing and c.ai_class is not None]
    calls = np.array([c.call == positive for c in patches], bool)
    p_decided = np.array([decided_p_positive(c, positive) for c in patches], np.float64)
    given = np.array([c.given for c in patches], bool)
    estimator = info.fraction_estimator or untested_estimator(info.accuracy)
    return estimate_fraction(calls, p_decided, given, info.review_band, estimator, pending_review)


def idc_summary(cells: list[Cell], info: ModelInfo, tally: Counts | None = None) -> SlideSummary:
    """The slide's IDC fraction and from the AI alone, and their maps on the model's patch grid."""
    tally = tally or counts(cells, info)
    positive = info.class_keys[1]
    placed = placed_cells(cells)
    grid = slide_grid(cells, info)
    offsets = [offset for _, offset in placed]
    probs = [decided_p_positive(c, positive) for c, _ in placed]
    calls = [2.0 if c.needs_review else 1.0 if c.call == positive else 0.0 for c, _ in placed]
    estimate = slide_fraction(cells, info, tally.pending_review)
    ai_n, ai_idc = sum(tally.ai.values()), tally.ai.get(positive, 0)
    interval = None if estimate.low is None else (estimate.low, estimate.high)
    return SlideSummary(estimate.patches, estimate.positive, estimate.value, tally.pending_review,
                        heat_map(offsets, probs, grid), heat_map(offsets, calls, grid),
                        ai_n, ai_idc, ai_idc / ai_n if ai_n else None, grid, interval)
