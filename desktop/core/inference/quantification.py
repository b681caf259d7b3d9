"""The IDC fraction's rule, one place for fitting and applying it: the two-sided Review band around a
two-class model's decision threshold, and the slide's fraction estimate with its 95% interval.

Both are chosen on validation patients by the trainer (`fit_review_band`, `fit_estimator`) and declared
in the model's metadata (`review_band`, `fraction_estimator`); the report applies them
(`estimate_fraction`). The estimate counts every tissue patch: the technician's call where one is given,
otherwise the model's call (classify-and-count: on validation patients it had the lowest per-patient
error of the estimators measured, see the model card). The interval adds two parts of the error of the
patches nobody has reviewed, with the validation error rate of each patch's kind (in or outside the band,
called positive or not): the patch-by-patch chance (binomial) and a patient-to-patient part that moves all
of a slide's errors together (`systematic`, fitted by moments on validation patients)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

ESTIMATOR_KIND = "classify-and-count"
Z95 = 1.959964
# The four kinds of unreviewed patch: where the decided P(positive) lies, and what was called.
KINDS = ("outside_negative", "outside_positive", "band_negative", "band_positive")


class QuantificationError(ValueError):
    """The metadata's `review_band` or `fraction_estimator` is not one this app can use."""


@dataclass(frozen=True)
class ReviewBand:
    """Calls whose decided P(positive) lies in [low, high) go to Review, on both sides of the threshold."""

    low: float
    high: float

    def contains(self, p_positive: np.ndarray) -> np.ndarray:
        p = np.asarray(p_positive, dtype=np.float64)
        return (p >= self.low) & (p < self.high)

    def as_metadata(self) -> str:
        return json.dumps([round(self.low, 4), round(self.high, 4)])


@dataclass(frozen=True)
class FractionEstimator:
    """How the fraction and its interval are made (metadata `fraction_estimator`)."""

    error_rates: dict[str, float]  # per kind (KINDS): validation P(true class != call) of unreviewed patches
    systematic: float  # patient-to-patient spread of the error, as a multiple of the expected errors
    chosen_on: str = ""
    kind: str = ESTIMATOR_KIND

    def as_metadata(self) -> str:
        return json.dumps({"kind": self.kind, "error_rates": {k: round(v, 4) for k, v in self.error_rates.items()},
                           "systematic": round(self.systematic, 4), "chosen_on": self.chosen_on})


def untested_estimator(accuracy: float | None) -> FractionEstimator:
    """For a model without a fitted estimator: the patch-by-patch part alone, every call wrong at the
    model's test error rate (a coin's doubt where the model states none)."""
    rate = 0.5 if accuracy is None else min(0.5, max(0.0, 1.0 - float(accuracy)))
    return FractionEstimator({k: rate for k in KINDS}, 0.0, "no fitted estimator in this model: binomial part only")


@dataclass(frozen=True)
class FractionEstimate:
    """The slide's fraction of positive patches, with its 95% interval, over `patches` tissue patches."""

    value: float | None
    low: float | None
    high: float | None
    patches: int
    positive: int  # patches called positive (the technician's call, else the model's)
    awaiting_review: int  # counted at the model's call until reviewed


def patch_kinds(positive_call: np.ndarray, p_positive: np.ndarray, band: ReviewBand | None) -> np.ndarray:
    """Index into KINDS per patch."""
    inside = band.contains(p_positive) if band is not None else np.zeros(len(positive_call), bool)
    return inside.astype(int) * 2 + np.asarray(positive_call, bool).astype(int)


def estimate_fraction(positive_call: np.ndarray, p_positive: np.ndarray, given: np.ndarray,
                      band: ReviewBand | None, estimator: FractionEstimator, awaiting_review: int = 0) -> FractionEstimate:
    """The fraction over every patch: `positive_call` is the technician's call where `given`, else the
    model's; `p_positive` the P(positive) the model's call was decided on."""
    calls = np.asarray(positive_call, bool)
    n = len(calls)
    if n == 0:
        return FractionEstimate(None, None, None, 0, 0, awaiting_review)
    unreviewed = ~np.asarray(given, bool)
    rates = np.array([estimator.error_rates[k] for k in KINDS])[patch_kinds(calls, p_positive, band)][unreviewed]
    variance = float((rates * (1 - rates)).sum() + (estimator.systematic * rates.sum()) ** 2)
    value = float(calls.mean())
    half = Z95 * math.sqrt(variance) / n
    return FractionEstimate(value, max(0.0, value - half), min(1.0, value + half), n, int(calls.sum()),
                            awaiting_review)


# --- fitting, on validation patients (the trainer and scripts/idc_quantification.py) --------------------

def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def fit_review_band(p_positive: np.ndarray, labels: np.ndarray, threshold: float, target_accuracy: float,
                    budget: float, step: float = 0.05) -> ReviewBand:
    """A band symmetric in log-odds around the threshold: the narrowest whose accepted calls reach
    `target_accuracy`, else the widest that sends at most `budget` of the patches to Review."""
    p = np.asarray(p_positive, np.float64)
    labels = np.asarray(labels)
    calls = p >= threshold
    centre, chosen = _logit(threshold), ReviewBand(threshold, threshold)
    for width in np.arange(step, 4.0 + 1e-9, step):
        band = ReviewBand(_sigmoid(centre - width), _sigmoid(centre + width))
        inside = band.contains(p)
        if inside.mean() > budget or inside.all():
            break
        chosen = band
        if (calls[~inside] == labels[~inside]).mean() >= target_accuracy:
            break
    return chosen


def fit_estimator(p_positive: np.ndarray, labels: np.ndarray, groups: np.ndarray, threshold: float,
                  band: ReviewBand | None, chosen_on: str = "") -> FractionEstimator:
    """Error rates per kind of patch, and the patient-to-patient part by moments: per patient,
    n^2 e^2 = sum q(1-q) + (k sum q)^2 on average, e the patient's classify-and-count error."""
    p = np.asarray(p_positive, np.float64)
    labels = np.asarray(labels).astype(bool)
    groups = np.asarray(groups)
    calls = p >= threshold
    kinds = patch_kinds(calls, p, band)
    rates = {}
    for i, name in enumerate(KINDS):
        mask = kinds == i
        rates[name] = float((calls[mask] != labels[mask]).mean()) if mask.any() else 0.5
    q = np.array([rates[k] for k in KINDS])[kinds]
    excess, scale = [], []
    for g in np.unique(groups):
        m = groups == g
        error = calls[m].mean() - labels[m].mean()
        excess.append(m.sum() ** 2 * error ** 2 - (q[m] * (1 - q[m])).sum())
        scale.append(q[m].sum() ** 2)
    systematic = math.sqrt(max(0.0, float(np.mean(excess)) / float(np.mean(scale)))) if scale else 0.0
    return FractionEstimator(rates, systematic, chosen_on)


# --- metadata -------------------------------------------------------------------------------------------

def parse_review_band(value: str | None, decision_threshold: float, n_classes: int) -> ReviewBand | None:
    if value is None or value == "":
        return None
    try:
        low, high = (float(v) for v in json.loads(value))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise QuantificationError("review_band must be a JSON list [low, high]") from exc
    if n_classes != 2:
        raise QuantificationError("review_band needs a two-class model")
    if not (0.0 <= low <= decision_threshold <= high <= 1.0):
        raise QuantificationError(f"review_band [{low}, {high}] must hold the decision threshold {decision_threshold} "
                                  "and lie within [0, 1]")
    return ReviewBand(low, high)


def parse_estimator(value: str | None) -> FractionEstimator | None:
    if value is None or value == "":
        return None
    try:
        spec = json.loads(value)
        rates = {k: float(spec["error_rates"][k]) for k in KINDS}
        systematic = float(spec["systematic"])
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise QuantificationError(f"fraction_estimator must give error_rates for {', '.join(KINDS)} "
                                  "and a systematic spread") from exc
    if spec.get("kind") != ESTIMATOR_KIND:
        raise QuantificationError(f"fraction_estimator kind {spec.get('kind')!r} is unknown to this app "
                                  f"(it runs {ESTIMATOR_KIND!r})")
    if not all(0.0 <= r <= 1.0 for r in rates.values()) or not (math.isfinite(systematic) and 0 <= systematic <= 100):
        raise QuantificationError("fraction_estimator error rates must lie in [0, 1], the spread in [0, 100]")
    return FractionEstimator(rates, systematic, str(spec.get("chosen_on", "")))
