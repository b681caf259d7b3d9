"""The IDC fraction a pathologist signs, chosen on validation patients: the Review band around the
decision threshold, the estimator of the slide's fraction (with its interval), and the colour guard
that flags what is not an H&E tissue patch.

Used by the training run (`trainer.train.run`) for a new IDC model, and on its own to give a shipped
model these parts without retraining (its weights unchanged, its metadata and card extended):

    .venv/bin/python -m trainer.quantify resources/models/breast-idc.onnx --version 3.1.0 \
        --data ../shared/data/idc --blood ../shared/data/pbc --out resources/models/breast-idc.onnx

Every choice is made on val patients; the test patients are read once, for the card's table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from desktop.core.inference.colour_guard import ColourGuard, colour_features
from desktop.core.inference.contract import ModelMetadata, read_props, write_props
from desktop.core.inference.quantification import (
    ESTIMATOR_KIND,
    FractionEstimator,
    ReviewBand,
    estimate_fraction,
    fit_estimator,
    fit_review_band,
)

# Review may take at most this share of val patches (the target is 20% on other patients: a margin).
BAND_BUDGET = 0.17
GUARD_COMPONENTS = 8  # Gaussians in the colour guard's mixture (fitted on train)
GUARD_PERCENTILE = 98.5  # of the val patches' colour scores: the guard's threshold (1.5% of val flagged by design)


def fit_colour_guard(train_images: np.ndarray, val_images: np.ndarray) -> ColourGuard:
    """The colour guard: a mixture fitted on the training patches, its threshold a percentile of val's scores."""
    from sklearn.mixture import GaussianMixture

    mixture = GaussianMixture(GUARD_COMPONENTS, covariance_type="full", random_state=0, reg_covar=1e-5)
    mixture.fit(colour_features(train_images).astype(np.float64))
    guard = ColourGuard(tuple(mixture.weights_.tolist()), tuple(map(tuple, mixture.means_.tolist())),
                        tuple(tuple(map(tuple, c)) for c in mixture.precisions_cholesky_.tolist()), 0.0)
    threshold = float(np.percentile(guard.negative_log_likelihood(val_images), GUARD_PERCENTILE))
    return replace(guard, threshold=threshold)


@dataclass(frozen=True)
class PatientRow:
    patient: str
    patches: int
    truth: float
    estimates: dict[str, float]  # estimator name -> fraction
    headline: float  # the shipped rule before review
    low: float
    high: float
    signed: float  # after a perfect reviewer of the Review band
    review_share: float


@dataclass
class Choice:
    band: ReviewBand
    estimator: FractionEstimator
    guard: ColourGuard | None
    comparison: dict[str, dict[str, float]]  # estimator name -> MAE, worst, bias (val, leave-one-patient-out)
    chosen: str  # the one the app runs (classify-and-count)
    val_rows: list[PatientRow] = field(default_factory=list)
    guard_figures: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        meta = {"review_band": self.band.as_metadata(), "fraction_estimator": self.estimator.as_metadata()}
        if self.guard is not None:
            meta["colour_guard"] = self.guard.as_metadata()
        return meta


# --- the estimators measured (leave one val patient out: each patient's figure uses the others' rates) ----

def _cc(p, y, train, test, t):
    return float((p[test] >= t).mean())


def _pcc(p, y, train, test, t):
    return float(p[test].mean())


def _acc(p, y, train, test, t):
    calls = p >= t
    tpr, fpr = calls[train & (y == 1)].mean(), calls[train & (y == 0)].mean()
    return float(np.clip((calls[test].mean() - fpr) / max(tpr - fpr, 1e-6), 0, 1))


def _pacc(p, y, train, test, t):
    pos, neg = p[train & (y == 1)].mean(), p[train & (y == 0)].mean()
    return float(np.clip((p[test].mean() - neg) / max(pos - neg, 1e-6), 0, 1))


ESTIMATORS: dict[str, Callable] = {
    ESTIMATOR_KIND: _cc,  # the app's calls counted
    "probability average": _pcc,  # calibrated P(IDC) averaged
    "adjusted count (Forman ACC)": _acc,
    "probabilistic adjusted count": _pacc,
}


def compare_estimators(p_decided: np.ndarray, p_patch: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                       threshold: float, patch_threshold: float = 0.5) -> tuple[dict, dict]:
    """Per-patient fraction error of each estimator on the decided P(IDC) (after the slide step), and of
    classify-and-count on the patch-alone P(IDC) (no slide step) beside them."""
    per_patient: dict[str, dict[str, float]] = {}
    for g in np.unique(groups):
        test = groups == g
        train = ~test
        row = {name: fn(p_decided, labels, train, test, threshold) for name, fn in ESTIMATORS.items()}
        row["classify-and-count, no slide step"] = _cc(p_patch, labels, train, test, patch_threshold)
        per_patient[str(g)] = row
    truth = {str(g): float(labels[groups == g].mean()) for g in np.unique(groups)}
    summary = {}
    for name in next(iter(per_patient.values())):
        errors = np.array([100 * (per_patient[g][name] - truth[g]) for g in per_patient])
        summary[name] = {"mae": float(np.abs(errors).mean()), "worst": float(np.abs(errors).max()),
                         "bias": float(errors.mean())}
    return summary, per_patient


def patient_rows(p_decided: np.ndarray, labels: np.ndarray, groups: np.ndarray, threshold: float, band: ReviewBand,
                 estimator: FractionEstimator, estimates: dict[str, dict[str, float]] | None = None) -> list[PatientRow]:
    """Per patient: the truth, the headline before review with its interval, and the signed figure after
    a perfect reviewer corrects every patch in the Review band (and nothing else)."""
    rows = []
    for g in np.unique(groups):
        m = groups == g
        p, y = p_decided[m], labels[m].astype(bool)
        calls, inside = p >= threshold, band.contains(p)
        before = estimate_fraction(calls, p, np.zeros(len(p), bool), band, estimator)
        signed = float(np.where(inside, y, calls).mean())
        rows.append(PatientRow(str(g), int(m.sum()), float(y.mean()), (estimates or {}).get(str(g), {}),
                               before.value, before.low, before.high, signed, float(inside.mean())))
    return rows


def choose(p_decided: np.ndarray, p_patch: np.ndarray, labels: np.ndarray, groups: np.ndarray, threshold: float,
           review_accuracy: float, train_images: np.ndarray | None = None, val_images: np.ndarray | None = None,
           budget: float = BAND_BUDGET) -> Choice:
    """Band, estimator and guard from val (the guard's statistics from train, its share flagged on val)."""
    comparison, per_patient = compare_estimators(p_decided, p_patch, labels, groups, threshold)
    band = fit_review_band(p_decided, labels, threshold, review_accuracy, budget)
    estimator = fit_estimator(p_decided, labels, groups, threshold, band,
                              chosen_on=f"val: {len(np.unique(groups))} patients, {len(labels)} patches")
    guard = fit_colour_guard(train_images, val_images) if train_images is not None and val_images is not None else None
    figures = {}
    if guard is not None and val_images is not None:
        flagged = guard.score(val_images) > 1
        figures["val_flagged"] = float(flagged.mean())
        figures["val_worst_patient_flagged"] = float(max(flagged[groups == g].mean() for g in np.unique(groups)))
    return Choice(band, estimator, guard, comparison, ESTIMATOR_KIND,
                  patient_rows(p_decided, labels, groups, threshold, band, estimator, per_patient), figures)


# --- the card ---------------------------------------------------------------------------------------

def _summary(rows: list[PatientRow]) -> dict[str, float]:
    head = np.array([100 * (r.headline - r.truth) for r in rows])
    signed = np.array([100 * (r.signed - r.truth) for r in rows])
    covered = sum(r.low - 1e-9 <= r.truth <= r.high + 1e-9 for r in rows)
    return {"mae": float(np.abs(head).mean()), "worst": float(np.abs(head).max()), "bias": float(head.mean()),
            "signed_mae": float(np.abs(signed).mean()), "signed_worst": float(np.abs(signed).max()),
            "covered": covered, "n": len(rows), "review": float(np.mean([r.review_share for r in rows])),
            "width": float(np.mean([100 * (r.high - r.low) for r in rows]))}


def patient_table(rows: list[PatientRow], title: str) -> list[str]:
    s = _summary(rows)
    lines = [f"**{title}** ({s['n']} patients): headline before review mean error {s['mae']:.1f} points, worst "
             f"{s['worst']:.1f}, bias {s['bias']:+.1f}; signed after a perfect reviewer of the band {s['signed_mae']:.1f}, "
             f"worst {s['signed_worst']:.1f}; the 95% interval holds the truth for {s['covered']} of {s['n']} "
             f"(mean width {s['width']:.1f} points); Review {s['review']:.1%} of patches per patient on average.", "",
             "| patient | patches | true IDC | headline (before review) | 95% interval | signed (perfect reviewer) | Review |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.patient} | {r.patches} | {r.truth:.1%} | {r.headline:.1%} | {r.low:.1%}–{r.high:.1%} | "
              f"{r.signed:.1%} | {r.review_share:.1%} |" for r in rows]
    return lines + [""]


def card_section(choice: Choice, version: str, test_rows: list[PatientRow] | None = None,
                 blood_flagged: float | None = None, blood_n: int = 0) -> list[str]:
    b, e = choice.band, choice.estimator
    lines = [f"## The IDC fraction: estimator, Review band and colour guard (v{version})", "",
             "Chosen on the val patients (never the test ones) by `trainer/quantify.py`; declared in the metadata "
             "(`review_band`, `fraction_estimator`, `colour_guard`) and applied by the core "
             "(`desktop/core/inference/quantification.py`, `colour_guard.py`).", "",
             f"**Review band.** Calls whose decided P(IDC) lies in [{b.low:.3f}, {b.high:.3f}) go to Review, on both "
             f"sides of the decision threshold: symmetric in log-odds, the widest that sends at most {BAND_BUDGET:.0%} "
             "of val patches to Review (the recipe's accepted accuracy is not reached within that budget).", "",
             "**Estimators measured** (val, per patient, each patient's figure from rates fitted on the other patients; "
             "points of IDC fraction):", "",
             "| estimator | mean error | worst | bias |", "|---|---|---|---|"]
    lines += [f"| {name}{' (chosen)' if name == choice.chosen else ''} | {v['mae']:.1f} | {v['worst']:.1f} | "
              f"{v['bias']:+.1f} |" for name, v in choice.comparison.items()]
    best = min((k for k in choice.comparison if k in ESTIMATORS), key=lambda k: choice.comparison[k]["mae"])
    if best != choice.chosen:  # the app runs classify-and-count only: say so rather than ship an untested rule
        lines += ["", f"On this val, the {best} had the lower per-patient error; the app runs {choice.chosen} only, "
                  "so that estimator must be built into the core before it can ship."]
    lines += ["", f"**Estimator: {e.kind}** over every tissue patch (the technician's call where given, otherwise the "
              "model's; a Review patch is counted at the model's call until reviewed, never left out). The 95% "
              "interval adds the binomial part of the unreviewed patches' errors at their val error rates "
              f"({', '.join(f'{k} {v:.3f}' for k, v in e.error_rates.items())}) and a patient-to-patient part "
              f"({e.systematic:.2f} × the expected errors, fitted by moments on val).", ""]
    lines += patient_table(choice.val_rows, "Val patients")
    if test_rows is not None:
        lines += patient_table(test_rows, "Test patients (read once)")
    g = choice.guard
    if g is not None:
        lines += [f"**Colour guard.** A mixture of {len(g.weights)} Gaussians over 15 colour and texture statistics "
                  f"of the training patches; an image less likely than the {GUARD_PERCENTILE:g}th percentile of the val "
                  f"patches' scores, or with less than "
                  f"{g.min_tissue:.0%} tissue (blank glass): Unfamiliar, and a run whose first images are mostly "
                  f"Unfamiliar stops. Val patches flagged: {choice.guard_figures.get('val_flagged', float('nan')):.2%} "
                  f"(worst patient {choice.guard_figures.get('val_worst_patient_flagged', float('nan')):.1%})"
                  + (f"; blood cells at 50x50 flagged: {blood_flagged:.1%} of {blood_n}." if blood_flagged is not None
                     else "."), ""]
    return lines


# --- a shipped model, extended without retraining ---------------------------------------------------------

def _decided(model, x: np.ndarray, items: list) -> tuple[np.ndarray, np.ndarray]:
    from trainer.slides import slide_level

    p_patch = model.probabilities_in_batches(x, 512)[:, 1]
    step = model.info.slide_step
    p = slide_level(step, model.info.patch.size)(p_patch, items) if step else p_patch
    return p, p_patch


def blood_at_patch_size(model, blood: Path, every: int = 20) -> np.ndarray:
    from desktop.core.inference.imaging import load_prepared

    files = sorted(blood.glob("*/*.jpg"))[::every]
    return np.stack([load_prepared(f, model.info.input) for f in files])


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnx

    from desktop.core.inference.model import Model
    from trainer import lab_book
    from trainer.data import load_arrays, split_idc
    from trainer.recipe import DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--blood", type=Path, help="PBC folder: blood cells the colour guard must flag")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--card", type=Path, help="the card to extend (default: beside --out)")
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)

    base = Model(args.model, split_front_end=False)
    threshold = base.info.decision_threshold
    dataset = split_idc(args.data)
    train, _ = load_arrays(dataset.items["train"], base.info.input)
    val, _ = load_arrays(dataset.items["val"], base.info.input)
    p_val, p_val_patch = _decided(base, val.x, val.items)
    groups = np.array([i.group for i in val.items])
    choice = choose(p_val, p_val_patch, val.y, groups, threshold, DEFAULTS["idc"].review_accuracy, train.x, val.x)
    del train
    test, _ = load_arrays(dataset.items["test"], base.info.input)  # read once, for the card
    p_test, _ = _decided(base, test.x, test.items)
    test_rows = patient_rows(p_test, test.y, np.array([i.group for i in test.items]), threshold, choice.band,
                             choice.estimator)
    blood_flagged, blood_n = None, 0
    if args.blood and choice.guard is not None:
        cells = blood_at_patch_size(base, args.blood)
        blood_flagged, blood_n = float((choice.guard.score(cells) > 1).mean()), len(cells)

    proto = onnx.load(str(args.model))
    metadata = ModelMetadata.from_props(read_props(proto))
    provenance = {**(metadata.provenance or {}), "quantification": {
        "by": "trainer/quantify.py", "git_sha": lab_book.git_sha(), "date": dt.datetime.now().isoformat(timespec="seconds"),
        "base_sha256": base.info.sha256, "split_hash": dataset.split_hash()}}
    write_props(proto, replace(metadata, version=args.version, provenance=provenance,
                               carried={**metadata.carried, **choice.metadata()}).to_props())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(args.out))
    card = args.card or args.out.with_suffix(".card.md")
    text = card.read_text(encoding="utf-8") if card.exists() else ""
    marker = "## The IDC fraction: estimator, Review band and colour guard"
    text = text.split(marker)[0].rstrip() + "\n\n"
    text = text.replace(f"version {base.info.version},", f"version {args.version},", 1)
    card.write_text(text + "\n".join(card_section(choice, args.version, test_rows, blood_flagged, blood_n)),
                    encoding="utf-8")
    s_val, s_test = _summary(choice.val_rows), _summary(test_rows)
    lab_book.append({"date": dt.datetime.now().isoformat(timespec="seconds"), "task": base.info.task,
                     "name": f"quantify {args.version}", "git_sha": lab_book.git_sha(),
                     "hyper": {"band": [choice.band.low, choice.band.high], "estimator": choice.chosen,
                               "systematic": choice.estimator.systematic},
                     "val": s_val, "test": s_test, "guard": {**choice.guard_figures, "blood_flagged": blood_flagged},
                     "notes": f"IDC fraction rule for {base.info.key} (weights of v{base.info.version} unchanged)"})
    print(json.dumps({"val": s_val, "test": s_test, "guard": choice.guard_figures, "blood_flagged": blood_flagged,
                      "band": [choice.band.low, choice.band.high], "comparison": choice.comparison}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
