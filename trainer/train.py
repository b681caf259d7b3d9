"""One training run, as a protocol read top to bottom (`run` at the end):

split → decode once → reference model → our model → calibrate on val → evaluate on test
(once) → Unfamiliar detector → robustness → export + parity proof → card → lab book.

Each step is a function that returns a typed result. Every step writes into the run
folder; a stopped run resumes where it was (Keras BackupAndRestore per model, finished
models and decoded arrays are reused), but only with the recipe it was started with.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
from sklearn.metrics import balanced_accuracy_score

from desktop.core.calibration import unfamiliar_threshold
from desktop.core.inference.contract import IDC_MPP, ModelMetadata, classes_of
from desktop.core.inference.slide_step import SlideStep
from trainer import architectures, calibration, evaluate, export, lab_book, quantify
from trainer.calibration import Calibration
from trainer.data import SPLITS, Dataset, DecodedSplit, cached_arrays, split_blood, split_idc
from trainer.export import Unfamiliar
from trainer.fitting import Trained, bench_onnx, log, ood_scores, predict, recalibrate_batch_norm, train_model
from trainer.model_card import write_card
from trainer.recipe import Recipe, pin
from trainer.results import RunResults
from trainer.robustness import robustness
from trainer.slides import complete_slides, fraction_mae, idc_maps, idc_patients, slide_level


@dataclass(frozen=True)
class Evaluation:
    """Our model on the test split, read once, with the shipped decision rule."""

    metrics: dict
    probabilities: np.ndarray


@dataclass(frozen=True)
class Exported:
    path: Path
    metadata: ModelMetadata
    parity: dict
    images_per_s: float


# --- the steps ------------------------------------------------------------------------------

def split(recipe: Recipe, data: Path) -> Dataset:
    """Deduplicated, reproducible splits: stratified by class (blood) or by patient (IDC)."""
    if recipe.kind == "blood":
        dataset = split_blood(data, limit_per_class=recipe.limit)
    else:
        patients = sorted(p.name for p in data.iterdir() if p.is_dir())[:recipe.limit] if recipe.limit else None
        dataset = split_idc(data, patients)
    log(f"    split {dataset.split_hash()}: " + json.dumps({s: len(dataset.items[s]) for s in SPLITS})
        + f"; dropped {len(dataset.report['duplicates_dropped'])} duplicates, "
        f"{len(dataset.report['label_conflicts_dropped'])} label conflicts")
    for conflict in dataset.report["label_conflicts_dropped"]:
        log(f"    label conflict dropped: {conflict}")
    return dataset


def decode(recipe: Recipe, dataset: Dataset, out: Path) -> dict[str, DecodedSplit]:
    """Every image decoded once with the app's own preprocessing, cached in the run folder."""
    arrays = cached_arrays(dataset, recipe.spec, out)
    dataset.save_lists(out)
    return arrays


def reference_model(recipe: Recipe, arrays: dict[str, DecodedSplit], out: Path, n_classes: int) -> Trained:
    """The seed's recipe, layer for layer: the baseline our model must beat."""
    builder = architectures.seed_blood if recipe.kind == "blood" else architectures.seed_idc
    keras.utils.set_random_seed(1)
    shape = (recipe.input_size, recipe.input_size, 3)
    return train_model("seed", builder(shape, n_classes), arrays, recipe, out, recipe.seed_epochs, True)


def our_model(recipe: Recipe, arrays: dict[str, DecodedSplit], out: Path, n_classes: int) -> Trained:
    """SlideNet with the recipe's augmentation and schedule; batch norm re-estimated on clean images."""
    keras.utils.set_random_seed(2)
    shape = (recipe.input_size, recipe.input_size, 3)
    balanced = recipe.white_balance != "off"
    reference = architectures.background_reference(arrays["train"].x) if balanced else None
    model = architectures.slidenet(shape, n_classes, recipe.widths, name="slidenet", stem_stride=recipe.stem_stride,
                                   white_balance=reference, white_balance_enabled=recipe.white_balance == "trained")
    trained = train_model("slidenet", model, arrays, recipe, out, recipe.epochs, False)
    if balanced:
        trained.model.get_layer("white_balance").enabled = True  # from here on, the served graph
    recalibrate_batch_norm(trained.model, arrays["train"].x)
    return trained


def slide_step(recipe: Recipe) -> SlideStep | None:
    """The slide-level step the app will run (declared in the metadata), or None."""
    return SlideStep(radius=1, weight=recipe.slide_step_weight) if recipe.slide_step_weight > 0 else None


def calibrate(recipe: Recipe, val_logits: np.ndarray, val: DecodedSplit) -> Calibration:
    step = slide_step(recipe)
    calib = calibration.calibrate(val_logits, val.y, two_class_threshold=recipe.kind == "idc",
                                  review_accuracy=recipe.review_accuracy, review_budget=recipe.review_budget,
                                  slide=slide_level(step, recipe.input_size) if step else None, val_items=val.items)
    log(f"    val accuracy {calib.val_accuracy:.4f}, temperature {calib.temperature:.3f}, "
        f"review threshold {calib.review_threshold}, decision threshold {calib.decision_threshold}")
    return calib


def choose_fraction_rule(recipe: Recipe, val_logits: np.ndarray, arrays: dict[str, DecodedSplit],
                         calib: Calibration) -> quantify.Choice | None:
    """IDC: the Review band, the fraction estimator and the colour guard, chosen on val (trainer/quantify.py)."""
    if recipe.kind != "idc":
        return None
    val = arrays["val"]
    p_decided = calib.probabilities(val_logits, val.items)[:, 1]
    p_patch = calibration.softmax(val_logits, calib.temperature)[:, 1]
    return quantify.choose(p_decided, p_patch, val.y, np.array([i.group for i in val.items]), calib.decision_threshold,
                           recipe.review_accuracy, arrays["train"].x, val.x)


def val_figures(recipe: Recipe, val_logits: np.ndarray, val: DecodedSplit, calib: Calibration) -> dict:
    """The figures runs are chosen by, on val: balanced accuracy and (IDC) the complete val
    slides' IDC-fraction error, all through the shipped rule (and slide-level step)."""
    probs = calib.probabilities(val_logits, val.items)
    figures = {"val_balanced_accuracy": float(balanced_accuracy_score(val.y, calib.calls(probs)))}
    if recipe.kind == "idc":
        patients = idc_patients(val.items, probs[:, 1], calib.decision_threshold, val.y)
        complete = complete_slides(patients)
        figures["val_complete_patients"] = {p: patients[p] for p in complete}
        if complete:
            figures["val_complete_fraction_mae"] = fraction_mae(patients, complete)
    log("    " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if isinstance(v, float)))
    return figures


def evaluate_once(recipe: Recipe, model: keras.Model, test: DecodedSplit, calib: Calibration, classes: list[str],
                  dataset: Dataset, out: Path) -> Evaluation:
    """Metrics, reliability and (IDC) per-patient fractions on the test split, and their figures."""
    logits, _ = predict(model, test.x)
    probs = calib.probabilities(logits, test.items)
    ece_before, table_before = calibration.reliability(calibration.softmax(logits), test.y)
    ece_after, table_after = calibration.reliability(probs, test.y)
    metrics = evaluate.classification_metrics(test.y, calib.calls(probs), classes)
    metrics.update({"ece_before": ece_before, "ece_after": ece_after, "val_accuracy_clean": calib.val_accuracy})
    if recipe.kind == "idc":
        metrics.update(evaluate.binary_metrics(test.y, probs[:, 1], calib.decision_threshold))
        patients = idc_patients(test.items, probs[:, 1], calib.decision_threshold, test.y)
        complete = complete_slides(patients, dataset.report["patients"]["test"])
        metrics["patients"] = patients
        metrics["complete_patients"] = complete
        if complete:
            metrics["complete_fraction_mae"] = fraction_mae(patients, complete)
        metrics["all_patients_fraction_mae"] = fraction_mae(patients, list(patients))
        evaluate.plot_heatmaps(idc_maps(test.items, probs[:, 1], complete, recipe.input_size), out / "heatmaps.png")
    evaluate.plot_confusion(metrics["confusion"], classes, out / "confusion.png", f"{recipe.key}: test split")
    evaluate.plot_reliability(table_before, table_after, (ece_before, ece_after), out / "reliability.png")
    log(f"    test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {ece_before:.4f} -> {ece_after:.4f}")
    return Evaluation(metrics, probs)


def fit_unfamiliar(model: keras.Model, arrays: dict[str, DecodedSplit], n_classes: int) -> Unfamiliar:
    """Mahalanobis statistics on train; the threshold flags 1% of clean val images."""
    _, train_features = predict(model, arrays["train"].x)
    stats = export.fit_ood(train_features, arrays["train"].y, n_classes)
    _, val_features = predict(model, arrays["val"].x)
    return Unfamiliar(stats, unfamiliar_threshold(ood_scores(val_features, stats)))


def export_and_prove(recipe: Recipe, model: keras.Model, calib: Calibration, unfamiliar: Unfamiliar, metadata: ModelMetadata,
                     test: DecodedSplit, out: Path) -> Exported:
    """The serving graph to ONNX with its metadata; refused unless ONNX Runtime reproduces Keras."""
    size = recipe.input_size
    serve = export.serving_function(model, calib.temperature, unfamiliar.stats, size, size)
    proto = export.to_onnx(model, calib.temperature, unfamiliar.stats, size, size, metadata)
    parity = export.prove_parity(serve, proto, test.x[:max(256, min(len(test.x), 512))])
    speed = bench_onnx(proto.SerializeToString(), (recipe.input_size, recipe.input_size),
                       64 if recipe.kind == "blood" else 256)
    path = out / f"{recipe.key}.onnx"
    export.write_model(proto, path)
    return Exported(path, metadata, parity, speed)


def build_metadata(recipe: Recipe, classes: list[str], metrics: dict, dataset: Dataset, calib: Calibration,
                   unfamiliar: Unfamiliar, provenance: dict) -> ModelMetadata:
    """The model contract's metadata (desktop/core/inference/contract.py): what the app reads back."""
    summary = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
               "balanced_accuracy": metrics["balanced_accuracy"],
               "per_class_recall": {c: v["recall"] for c, v in metrics["per_class"].items()}, "n": metrics["n"],
               "ece": metrics["ece_after"]}
    for key in ("f1_idc", "roc_auc", "pr_auc", "complete_fraction_mae"):
        if key in metrics:
            summary[key] = metrics[key]
    patch = recipe.input_size if recipe.kind == "idc" else None  # patch models: the grid and the scale
    step = slide_step(recipe)
    return ModelMetadata(
        task=recipe.task, display_name=recipe.display_name, version=recipe.version,
        classes=classes_of(recipe.task, classes), input_size=(recipe.input_size, recipe.input_size),
        resize="area", small_input=recipe.small_input, temperature=round(calib.temperature, 6),
        review_threshold=calib.review_threshold, decision_threshold=calib.decision_threshold,
        ood_threshold=round(unfamiliar.threshold, 6), metrics=summary,
        dataset={"name": "PBC (Acevedo et al. 2020)" if recipe.kind == "blood" else
                 "Breast Histopathology Images (Janowczyk & Madabhushi 2016)",
                 "split_hash": dataset.split_hash(), "counts": dataset.counts()},
        provenance=provenance, patch_size=patch, patch_stride=patch, mpp=IDC_MPP if patch else None,
        carried={"slide_step": step.as_metadata()} if step else {},
    )


def provenance(recipe: Recipe, trained_by: str) -> dict:
    """Who made the weights: the commit and recipe that trained them, on what."""
    return {"trainer_git_sha": trained_by, "recipe": recipe.as_dict(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "onnxruntime": ort.__version__, "python": platform.python_version(),
            "cpu_cores": os.cpu_count(), "date": dt.datetime.now().isoformat(timespec="seconds")}


def record(recipe: Recipe, name: str, trained: Trained, metrics: dict, trained_by: str, notes: str) -> None:
    """One lab-book row per run, resumed or not (a resumed run says so)."""
    history = trained.history
    lab_book.append({
        "date": dt.datetime.now().isoformat(timespec="seconds"), "task": recipe.task, "name": name,
        "parameters": int(trained.model.count_params()),
        "hyper": {"recipe": "reference"} if name == "seed" else recipe.as_dict(),
        "epochs": len(history.get("loss", [])),
        "train_accuracy": history.get("accuracy", [None])[-1], "val_accuracy": history.get("val_accuracy", [None])[-1],
        "test_accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "minutes": trained.minutes,
        "val_accuracy_clean": metrics.get("val_accuracy_clean"), "resumed": not trained.fresh,
        **{k: metrics[k] for k in ("val_balanced_accuracy", "val_complete_fraction_mae") if k in metrics},
        "git_sha": trained_by, "notes": notes + (" (resumed: weights reused from the run folder)"
                                                 if not trained.fresh else ""),
    })


def ship_model(out: Path, ship: Path, key: str) -> None:
    """Copy the model, its card and its figures into resources/models/."""
    ship.mkdir(parents=True, exist_ok=True)
    figures = ship / "figures"
    figures.mkdir(exist_ok=True)
    shutil.copy2(out / f"{key}.onnx", ship / f"{key}.onnx")
    shutil.copy2(out / f"{key}.card.md", ship / f"{key}.card.md")
    for png in ("confusion", "curves", "reliability", "heatmaps"):
        if (out / f"{png}.png").exists():
            shutil.copy2(out / f"{png}.png", figures / f"{key}-{png}.png")


# --- the run --------------------------------------------------------------------------------

def run(recipe: Recipe, data: Path, out: Path, external: Path | None = None, ship: Path | None = None,
        lab_book_row: bool = True, notes: str = "") -> RunResults:
    out.mkdir(parents=True, exist_ok=True)
    pin(recipe, out)
    trained_by = lab_book.git_sha()  # the commit that trains the weights, not the one at export time

    log(f"1/9 split {data}")
    dataset = split(recipe, data)
    classes, n_classes = dataset.classes, len(dataset.classes)

    log("2/9 decode once (the app's own preprocessing) and cache")
    arrays = decode(recipe, dataset, out)
    test = arrays["test"]
    results = RunResults(recipe.kind, classes, dataset.split_hash(), dataset.counts(), dataset.facts())

    histories = {}
    if not recipe.skip_seed:
        log("3/9 reference model (the seed's recipe)")
        seed = reference_model(recipe, arrays, out, n_classes)
        seed_logits, _ = predict(seed.model, test.x)
        results.seed = evaluate.classification_metrics(test.y, seed_logits.argmax(1), classes)
        if recipe.kind == "idc":
            results.seed.update(evaluate.binary_metrics(test.y, calibration.softmax(seed_logits)[:, 1], 0.5))
        histories["seed"] = seed.history
        if lab_book_row:
            record(recipe, "seed", seed, results.seed, trained_by, "")

    log("4/9 our model")
    ours = our_model(recipe, arrays, out, n_classes)
    histories["slidenet"] = ours.history
    evaluate.plot_curves(histories, out / "curves.png")

    log("5/9 calibrate on val")
    val_logits, _ = predict(ours.model, arrays["val"].x)
    calib = calibrate(recipe, val_logits, arrays["val"])
    chosen_by = val_figures(recipe, val_logits, arrays["val"], calib)
    results.take_val_figures(chosen_by)
    fraction_rule = choose_fraction_rule(recipe, val_logits, arrays, calib)

    log("6/9 evaluate on the test split (once)")
    evaluation = evaluate_once(recipe, ours.model, test, calib, classes, dataset, out)
    results.ours = evaluation.metrics
    results.val_accuracy, results.temperature = calib.val_accuracy, calib.temperature
    results.review_threshold, results.decision_threshold = calib.review_threshold, calib.decision_threshold
    results.review_tradeoff_val = calib.tradeoff

    log("7/9 Unfamiliar detector (Mahalanobis, two depths) fitted on train, threshold on val")
    unfamiliar = fit_unfamiliar(ours.model, arrays, n_classes)
    results.ood_threshold = unfamiliar.threshold

    log("8/9 robustness: stain shifts, full resolution, another lab")
    results.robustness = robustness(ours.model, recipe, classes, test, calib, unfamiliar,
                                       external if recipe.kind == "blood" else None,
                                       evaluation.metrics.get("complete_patients"))

    log("9/9 export to ONNX, prove parity, write the card")
    metadata = build_metadata(recipe, classes, evaluation.metrics, dataset, calib, unfamiliar,
                              provenance(recipe, trained_by))
    if fraction_rule is not None:
        metadata = replace(metadata, carried={**metadata.carried, **fraction_rule.metadata()})
    exported = export_and_prove(recipe, ours.model, calib, unfamiliar, metadata, test, out)
    results.parity, results.speed_images_per_s = exported.parity, exported.images_per_s
    results.training_minutes = ours.minutes
    (out / "results.json").write_text(json.dumps(results.as_dict(), indent=1))
    write_card(out / f"{recipe.key}.card.md", recipe, results, metadata)
    if fraction_rule is not None:
        test_rows = quantify.patient_rows(evaluation.probabilities[:, 1], test.y, np.array([i.group for i in test.items]),
                                          calib.decision_threshold, fraction_rule.band, fraction_rule.estimator)
        with (out / f"{recipe.key}.card.md").open("a", encoding="utf-8") as card:
            card.write("\n" + "\n".join(quantify.card_section(fraction_rule, recipe.version, test_rows)))
    if lab_book_row:
        record(recipe, "slidenet", ours, {**evaluation.metrics, **chosen_by}, trained_by, notes)
    if ship:
        ship_model(out, ship, recipe.key)
    log(f"done: {exported.path}")
    return results
