"""Write the model card (markdown) from a run's results: data, split, metrics, limits."""

from __future__ import annotations

from pathlib import Path

from desktop.core.inference.contract import BLOOD, IDC, ModelMetadata
from trainer.results import RunResults

CITATIONS = {
    BLOOD: (
        "PBC dataset: Acevedo A., Merino A., Alférez S., Molina Á., Boldú L., Rodellar J. *A dataset of "
        "microscopic peripheral blood cell images for development of automatic recognition systems.* "
        "Data in Brief 30 (2020) 105474; Mendeley Data snkd93bnjr, CC BY 4.0. CellaVision DM96, "
        "Hospital Clinic of Barcelona, May-Grünwald-Giemsa, normal donors. Used here downscaled by 2 (INTER_AREA)."
    ),
    IDC: (
        "Breast Histopathology Images (Kaggle, P. Mooney), from Janowczyk A., Madabhushi A. *Deep learning for "
        "digital pathology image analysis*, J Pathol Inform 2016;7:29, and Cruz-Roa A. et al., SPIE Medical "
        "Imaging 2014. A subset of {images:,} patches from {patients} patients."
    ),
}


def _pct(v) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}%"


def write_card(path: Path, cfg, results: RunResults, metadata: ModelMetadata) -> None:
    """The card, section by section: where the model came from, its data, input, test results, Review, speed, limits."""
    provenance = metadata.provenance or {}
    lines = [*_heading(cfg, metadata, provenance), *_data(cfg, results), *_input(cfg, metadata),
             *_test_results(cfg, results), *_per_class(cfg.key, results),
             *(_idc_results(cfg.key, results, metadata) if cfg.task == IDC else []),
             *_review(results), *_speed(cfg, results, provenance), *_limits(results), *_caveats(cfg.task)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _heading(cfg, metadata: ModelMetadata, provenance: dict) -> list[str]:
    return [f"# Model card: {cfg.display_name}", "",
            f"File `{cfg.key}.onnx`, version {cfg.version}, task `{cfg.task}`, schema `{metadata.schema}`.",
            f"Trained by `slidetally-train` (git {provenance['trainer_git_sha']}, TensorFlow "
            f"{provenance['tensorflow']}, {provenance['date']}).", ""]


def _data(cfg, results: RunResults) -> list[str]:
    """The citation and the images per class in each split."""
    lines = ["## Data", "", CITATIONS[cfg.task].format(**results.data), "",
             f"Split hash `{results.split_hash}` (file lists in the run's `split.json`). Counts per split:", "",
             "| split | " + " | ".join(results.classes) + " |", "|---|" + "---|" * len(results.classes)]
    for split, counts in results.counts.items():
        lines.append(f"| {split} | " + " | ".join(str(counts[c]) for c in results.classes) + " |")
    return lines


def _input(cfg, metadata: ModelMetadata) -> list[str]:
    lines = ["", "## Input", "",
             f"uint8 RGB `[N, {cfg.input_size}, {cfg.input_size}, 3]`; any image is decoded to RGB and "
             f"`cv2.resize`d with INTER_AREA; smaller images: `{cfg.small_input}`. Scaling is inside the graph.", ""]
    if metadata.mpp is not None:
        lines += [f"Scale: {metadata.mpp:g} µm per input pixel (metadata `mpp`, from the data's description: "
                  "40x scans shown at 2.5x). The app reads whole-slide images at this scale.", ""]
    return lines


def _test_results(cfg, results: RunResults) -> list[str]:
    """The test split's metrics beside the reference recipe's, the val figures runs are chosen by, calibration."""
    ours, seed = results.ours, results.seed
    lines = ["## Results on the test split (touched once)", "",
             "| metric | reference recipe (seed) | ours |", "|---|---|---|"]
    rows = [("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("macro-F1", "macro_f1")]
    if cfg.task == IDC:
        rows += [("F1 (IDC)", "f1_idc"), ("ROC AUC", "roc_auc"), ("PR AUC", "pr_auc")]
    for label, k in rows:
        s = f"{seed[k]:.4f}" if seed and k in seed else "-"
        lines.append(f"| {label} | {s} | {ours[k]:.4f} |")
    if results.val_accuracy is not None:
        lines.append("| accuracy on val (clean images; the split used to choose between runs) | - | "
                     f"{results.val_accuracy:.4f} |")
    if results.val_balanced_accuracy is not None:
        lines.append(f"| balanced accuracy on val (chosen by) | - | {results.val_balanced_accuracy:.4f} |")
    lines.append(f"| ECE before → after temperature (T={results.temperature:.3f}) | - | "
                 f"{ours['ece_before']:.4f} → {ours['ece_after']:.4f} |")
    return lines


def _per_class(key: str, results: RunResults) -> list[str]:
    """Precision, recall and F1 per class, then the figures."""
    lines = ["", "Per class (ours):", "", "| class | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    for c, v in results.ours["per_class"].items():
        lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1-score']:.3f} | {int(v['support'])} |")
    return lines + ["", f"![confusion matrix](figures/{key}-confusion.png)", "",
                    f"![loss and accuracy per epoch](figures/{key}-curves.png)", "",
                    f"![reliability](figures/{key}-reliability.png)", ""]


def _idc_results(key: str, results: RunResults, metadata: ModelMetadata) -> list[str]:
    """The decision threshold, the slide-level step, and the IDC fraction per test patient."""
    ours = results.ours
    step = metadata.carried.get("slide_step")
    lines = [f"Decision threshold P(IDC) ≥ {results.decision_threshold} (chosen on val for balanced accuracy"
             + (", on the slide-level step's output)." if step else ")."), ""]
    if step:
        lines += [f"Slide-level step (metadata `slide_step`, run by the app's core over every patch of a slide "
                  f"before the decision rule, `desktop/core/inference/slide_step.py`): `{step}`. Each patch's logit is "
                  "blended with the mean logit of its neighbours on the slide grid. Every figure above and below "
                  "is measured through it, as the app calls.", ""]
    lines += ["### Per-patient IDC fraction (test patients)", "",
              f"Mean absolute error, complete slides: {_pct(ours.get('complete_fraction_mae'))}; "
              f"all test patients: {_pct(ours.get('all_patients_fraction_mae'))}.", "",
              "| patient | patches | true IDC | predicted IDC | error (points) |", "|---|---|---|---|---|"]
    for pid in ours["complete_patients"]:
        v = ours["patients"][pid]
        lines.append(f"| {pid} (complete) | {v['n']} | {_pct(v['true'])} | {_pct(v['predicted'])} | "
                     f"{100 * (v['predicted'] - v['true']):+.1f} |")
    for pid, v in results.val_complete_patients.items():
        lines.append(f"| {pid} (complete, **val**: chosen by, not a test figure) | {v['n']} | {_pct(v['true'])} | "
                     f"{_pct(v['predicted'])} | {100 * (v['predicted'] - v['true']):+.1f} |")
    return lines + ["", f"![heat maps](figures/{key}-heatmaps.png)", ""]


def _review(results: RunResults) -> list[str]:
    """The Review threshold and the share sent to Review against the accuracy of the rest, on val."""
    lines = ["## Review threshold (chosen on val)", "",
             f"Calls with top probability below **{results.review_threshold}** go to Review.", "",
             "| threshold | sent to Review | accuracy of the rest |", "|---|---|---|"]
    for r in results.review_tradeoff_val:
        lines.append(f"| {r['threshold']} | {_pct(r['review_share'])} | {_pct(r['accepted_accuracy'])} |")
    return lines


def _speed(cfg, results: RunResults, provenance: dict) -> list[str]:
    """Images per second, training time, and the export's parity with Keras."""
    return ["", "## Speed", "",
            f"ONNX Runtime alone, {results.speed_images_per_s:.0f} images/s on this machine's CPU cores "
            f"(batch {64 if cfg.task == 'blood-differential' else 256}). Training: {results.training_minutes:.1f} min "
            f"on {provenance.get('cpu_cores', '?')} CPU cores.", "",
            f"Export parity (Keras vs ONNX Runtime, {results.parity['n']} test images): max |Δp| "
            f"{results.parity['max_abs_dprob']:.2e}, top-1 identical: {results.parity['same_top1']}.", ""]


def _limits(results: RunResults) -> list[str]:
    """The Unfamiliar detector, then each robustness condition: its table, full vs half size, IDC fraction, curves."""
    lines = ["## Limits", "",
             f"Unfamiliar detector: Mahalanobis distance of pooled features to the nearest class mean; threshold "
             f"{results.ood_threshold:.3f} = 99th percentile on val (≈1% of in-domain images flagged by design).", "",
             "| condition | n | accuracy | Unfamiliar | accepted | accuracy of accepted | wrong calls caught |",
             "|---|---|---|---|---|---|---|"]
    consistency = results.robustness.get("full resolution vs half size")
    fractions = [(name, r["complete_fraction_mae"]) for name, r in results.robustness.items()
                 if "complete_fraction_mae" in r]
    for name, r in results.robustness.items():
        if name == "full resolution vs half size":
            continue
        lines.append(f"| {name} | {r['n']} | {_pct(r['accuracy'])} | {_pct(r['unfamiliar_share'])} | "
                     f"{_pct(r['accepted_share'])} | {_pct(r['accepted_accuracy'])} | {_pct(r['wrong_caught'])} |")
    if consistency:
        lines += ["", f"Full-resolution originals (~360 px, as the analyser saves them; the app decodes them at half size in "
                  f"libjpeg, then INTER_AREA) vs the half-size copies the model "
                  f"was trained on, {consistency['n']} images: same call on {_pct(consistency['agreement'])}; accuracy "
                  f"{_pct(consistency['accuracy_full'])} (full) vs {_pct(consistency['accuracy_half'])} (half); "
                  f"max |Δp| {consistency['max_abs_dprob']:.3f}. (Some of these images are in the training split.)"]
    if fractions:
        lines += ["", "IDC fraction of the complete test patients, mean absolute error (points) per condition: "
                  + ", ".join(f"{name} {100 * mae:.1f}" for name, mae in fractions) + "."]
    return lines + _confidence_curves(results)


def _confidence_curves(results: RunResults) -> list[str]:
    """Accepted-call accuracy against the share accepted, in domain and from another lab."""
    lines = []
    for name, r in results.robustness.items():
        if name in ("in_domain", "other lab (BCCD)"):
            lines += ["", f"Accepted-call accuracy vs share accepted, {name} (confidence bar swept, Unfamiliar excluded):", "",
                      "| confidence ≥ | accepted | accuracy of accepted |", "|---|---|---|"]
            lines += [f"| {c['threshold']} | {_pct(c['accepted_share'])} | {_pct(c['accepted_accuracy'])} |" for c in r["curve"]]
            lines += ["", "Per-class accuracy: " + ", ".join(f"{c} {_pct(v)}" for c, v in r["per_class_accuracy"].items())]
    return lines


def _caveats(task: str) -> list[str]:
    """What the model was not trained for, in the technician's words."""
    if task == BLOOD:
        return ["", "- Trained on one analyser (CellaVision DM96), one hospital, one stain, normal donors only: "
                "blasts, atypical lymphocytes, smudge cells and other pathological cells are not among the classes "
                "and will be forced into one of the 8 (or flagged Unfamiliar).",
                "- Images from other labs (see the BCCD row) are much less reliable: verify every call."]
    return ["", "- Patches at 2.5x from one source collection; other scanners, stains or magnifications are "
            "outside what was tested.", "- A patch-level call is not a diagnosis: the IDC fraction is an aid to "
            "the pathologist's reading of the slide."]
