"""How far the model can be trusted outside its test split: accepted-call accuracy under
stain shifts and at another lab, and full-resolution vs half-size agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from desktop.core.inference.imaging import InputSpec, UnreadableImage, load_prepared
from trainer import calibration
from trainer.augment import stain_shift
from trainer.calibration import Calibration
from trainer.data import DecodedSplit
from trainer.export import Unfamiliar
from trainer.fitting import ood_scores, predict
from trainer.recipe import Recipe
from trainer.slides import fraction_mae, idc_patients

STAIN_SHIFTS = {
    "haematoxylin +30%": ((1.3, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "eosin +30%": ((1.0, 1.3, 1.0), (0.0, 0.0, 0.0)),
    "pale (all stains -30%)": ((0.7, 0.7, 0.7), (0.0, 0.0, 0.0)),
    "blue cast": ((1.0, 1.0, 1.0), (0.08, -0.04, 0.0)),
}


def external_blood(folder: Path, classes: list[str], spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k, name in enumerate(classes):
        for path in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            try:
                xs.append(load_prepared(path, spec))
                ys.append(k)
            except UnreadableImage:
                continue
    return (np.stack(xs), np.array(ys)) if xs else (np.empty((0, *spec_shape(spec), 3), np.uint8), np.empty(0, int))


def spec_shape(spec: InputSpec) -> tuple[int, int]:
    return spec.height, spec.width


def robustness(model, recipe: Recipe, classes: list[str], test: DecodedSplit, calib: Calibration,
               unfamiliar_detector: Unfamiliar, external: Path | None, complete: list[str] | None = None) -> dict:
    """Accepted-call accuracy vs share accepted: in-domain, under stain shifts, at another lab.

    Calls use the shipped decision rule (the IDC threshold for two classes); for IDC each
    condition also reports the complete test patients' IDC-fraction error."""
    result: dict = {}

    def assess(x, y, with_patients: bool = False, items: list | None = None):
        logits, feats = predict(model, x)
        probs = calib.probabilities(logits, items)
        preds = calib.calls(probs)
        correct = preds == y
        unfamiliar = ood_scores(feats, unfamiliar_detector.stats) > unfamiliar_detector.threshold
        conf = probs.max(1)
        accepted = (conf >= calib.review_threshold) & ~unfamiliar
        wrong = ~correct
        per_class = {classes[k]: float(correct[y == k].mean()) for k in np.unique(y)}
        return {
            "n": int(len(y)),
            "accuracy": float(correct.mean()),
            "per_class_accuracy": per_class,
            "unfamiliar_share": float(unfamiliar.mean()),
            "accepted_share": float(accepted.mean()),
            "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else float("nan"),
            "wrong_caught": float((~accepted)[wrong].mean()) if wrong.any() else float("nan"),
            "curve": calibration.accepted_curve(correct, conf, unfamiliar),
            **(_fraction_error(probs[:, 1], y) if with_patients else {}),
        }

    def _fraction_error(p_idc, y):
        return {"complete_fraction_mae": fraction_mae(idc_patients(test.items, p_idc, calib.decision_threshold, y),
                                                      complete)}

    per_patient = bool(complete)
    x_test, y_test = test.x, test.y
    spec = recipe.spec
    result["in_domain"] = assess(x_test, y_test, per_patient, test.items)
    for name, (scale, shift) in STAIN_SHIFTS.items():
        result[f"stain shift: {name}"] = assess(stain_shift(x_test, scale, shift), y_test, per_patient, test.items)
    fullres = external.parent / "pbc_fullres_samples" if external is not None else None
    if fullres is not None and fullres.is_dir() and recipe.kind == "blood":
        result["full resolution vs half size"] = fullres_consistency(model, classes, spec, fullres,
                                                                     external.parent / "pbc", calib.temperature)
    if external is not None and external.is_dir():
        x_ext, y_ext = external_blood(external, classes, spec)
        if len(x_ext):
            result["other lab (BCCD)"] = assess(x_ext, y_ext)
    return result


def fullres_consistency(model, classes, spec, fullres: Path, halfres: Path, temperature: float) -> dict:
    """The analyser's originals (~360 px) and the half-size copies trained on must get the same calls."""
    full, half, labels = [], [], []
    for k, name in enumerate(classes):
        for path in sorted((fullres / name).glob("*")):
            twin = halfres / name / path.name
            if not twin.exists():
                continue
            try:
                full.append(load_prepared(path, spec))
                half.append(load_prepared(twin, spec))
                labels.append(k)
            except UnreadableImage:
                continue
    if not full:
        return {}
    y = np.array(labels)
    p_full = calibration.softmax(predict(model, np.stack(full))[0], temperature)
    p_half = calibration.softmax(predict(model, np.stack(half))[0], temperature)
    return {"n": len(y), "agreement": float((p_full.argmax(1) == p_half.argmax(1)).mean()),
            "accuracy_full": float((p_full.argmax(1) == y).mean()), "accuracy_half": float((p_half.argmax(1) == y).mean()),
            "max_abs_dprob": float(np.abs(p_full - p_half).max())}
