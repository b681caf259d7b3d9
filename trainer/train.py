"""One training run, top to bottom: split → decode once → seed model → our model →
calibrate → evaluate on test (once) → Unfamiliar detector → export + parity → card.

Every step writes into the run folder; a run that is stopped resumes where it was
(Keras BackupAndRestore per model, finished models and decoded arrays are reused).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402

from desktop.core.imaging import InputSpec, UnreadableImage, load_prepared  # noqa: E402
from trainer import architectures, calibration, evaluate, export, lab_book  # noqa: E402
from trainer.augment import AugmentConfig, augment_batch, stain_shift  # noqa: E402
from trainer.data import SPLITS, cached_arrays, patch_xy, split_blood, split_idc  # noqa: E402
from trainer.model_card import write_card  # noqa: E402

SCHEMA = "slidetally/1"
BLOOD_CLASSES = {
    "basophil": ("Basophil", "wbc"),
    "eosinophil": ("Eosinophil", "wbc"),
    "erythroblast": ("Erythroblast (NRBC)", "nrbc"),
    "ig": ("Immature granulocyte", "wbc"),
    "lymphocyte": ("Lymphocyte", "wbc"),
    "monocyte": ("Monocyte", "wbc"),
    "neutrophil": ("Neutrophil", "wbc"),
    "platelet": ("Platelet", "platelet"),
}
IDC_CLASSES = {"normal": ("No IDC", "tissue"), "idc": ("IDC", "tumour")}


@dataclass
class TaskConfig:
    key: str  # file stem of the shipped model
    task: str
    display_name: str
    input_size: int
    small_input: str
    widths: tuple[int, ...]
    epochs: int
    seed_epochs: int
    batch: int
    learning_rate: float
    balanced: bool  # class weights against imbalance
    review_accuracy: float  # accepted calls must reach this on val ...
    review_budget: float  # ... sending at most this share to Review
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    stem_stride: int = 2
    ema: float = 0.0  # >0: ship an exponential moving average of the weights (flatter minimum, steadier across patients)
    subtype_weight: float = 0.0  # >0: an auxiliary head on the file names' sub-types (SNE, BNE, MY, ...), this loss weight
    version: str = "1.0.0"


TASKS = {
    "blood": TaskConfig("blood-pbc8", "blood-differential", "Blood smear differential (PBC, 8 classes)",
                        96, "resize", (48, 96, 192, 320), epochs=36, seed_epochs=40, batch=64,
                        learning_rate=3e-3, balanced=False, review_accuracy=0.995, review_budget=0.08,
                        augment=AugmentConfig(hed_sigma=0.08, saturation=0.25, scale_prob=0.6, scale_min=0.4,
                                              scale_max=1.2, blur_prob=0.3),
                        subtype_weight=0.5, version="3.0.0"),
    "idc": TaskConfig("breast-idc", "idc-patch", "Breast histopathology IDC (50x50 patches)",
                      50, "pad-white", (32, 64, 128, 192), epochs=40, seed_epochs=30, batch=128,
                      learning_rate=3e-3, balanced=True, review_accuracy=0.95, review_budget=0.15,
                      augment=AugmentConfig(hed_sigma=0.08, scale_prob=0.3, scale_min=0.85, scale_max=1.15)),
}


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


# --- training ---------------------------------------------------------------------------

def _train_ds(x, y, batch, augment: AugmentConfig | None, weights=None):
    """`y` is one label array, or a tuple (label, sub-type) for the auxiliary head."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=1, reshuffle_each_iteration=True)
    ds = ds.batch(batch, drop_remainder=len(x) > batch)
    if augment is not None:
        ds = ds.map(lambda a, b: augment_batch(a, b, augment), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    if weights is not None:
        w = tf.constant(weights, tf.float32)
        ds = ds.map(lambda a, b: (a, b, tf.gather(w, b[0] if isinstance(b, tuple) else b)))
    return ds.prefetch(tf.data.AUTOTUNE)


def _val_ds(x, y, batch):
    """Clean validation batches; `y` as in `_train_ds`."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).map(lambda a, b: (tf.cast(a, tf.float32), b))


def class_weights(y: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n).astype(np.float64)
    return (len(y) / (n * np.maximum(counts, 1))).astype(np.float32)


def train_model(name, model, arrays, cfg: TaskConfig, out: Path, epochs: int, seed_style: bool):
    """Fit one model (resumable); seed models keep the reference recipe (Adam + early stopping).

    Returns (model, training minutes, whether it was trained now rather than reused)."""
    path = out / f"{name}.keras"
    if path.exists():
        log(f"{name}: already trained, reusing {path.name}")
        meta = json.loads((out / f"{name}.train.json").read_text())
        return keras.models.load_model(path), meta["minutes"], False
    x_train, y_train, x_val, y_val = arrays["train"].x, arrays["train"].y, arrays["val"].x, arrays["val"].y
    n_classes = int(max(y_train.max(), y_val.max()) + 1)
    weights = class_weights(y_train, n_classes) if cfg.balanced and not seed_style else None
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fitted = model
    subtypes = sorted({i.subtype for s in ("train", "val") for i in arrays[s].items}) if cfg.subtype_weight else []
    if not seed_style and len(subtypes) > 1:
        # The sub-type head shares everything up to the pooled features and is dropped at export:
        # it asks the features to separate band from segmented neutrophils, myelocytes from
        # metamyelocytes, which is where the 8-class boundary (ig vs neutrophil) is hardest.
        sub_logits = keras.layers.Dense(len(subtypes), name="subtype_logits")(export.head_input(model))
        fitted = keras.Model(model.inputs, {"logits": model.outputs[0], "subtype": sub_logits}, name=f"{name}_train")
        code = {t: k for k, t in enumerate(subtypes)}
        sub_train = np.array([code[i.subtype] for i in arrays["train"].items], np.int32)
        sub_val = np.array([code[i.subtype] for i in arrays["val"].items], np.int32)
        y_train, y_val = (y_train, sub_train), (y_val, sub_val)
        log(f"{name}: auxiliary sub-type head over {len(subtypes)} sub-types: {', '.join(subtypes)}")
    if seed_style:
        optimizer = keras.optimizers.Adam()
        callbacks = [keras.callbacks.EarlyStopping("val_accuracy", min_delta=0.005, patience=5, restore_best_weights=True)]
        train = _train_ds(x_train, y_train, 32, None)
    else:
        steps = epochs * max(1, len(x_train) // cfg.batch)
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate * 0.1, steps, warmup_target=cfg.learning_rate,
                                                          warmup_steps=max(1, steps // 20))
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=1e-4, use_ema=cfg.ema > 0,
                                           ema_momentum=cfg.ema or 0.99)
        callbacks = []
        train = _train_ds(x_train, y_train, cfg.batch, cfg.augment, weights)
    if fitted is model:
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    else:
        fitted.compile(optimizer=optimizer, loss={"logits": loss, "subtype": loss},
                       loss_weights={"logits": 1.0, "subtype": cfg.subtype_weight},
                       metrics={"logits": ["accuracy"]})
        train = train.map(lambda a, b: (a, {"logits": b[0], "subtype": b[1]}))
    callbacks += [
        keras.callbacks.BackupAndRestore(str(out / f"backup-{name}")),
        keras.callbacks.CSVLogger(str(out / f"{name}.history.csv"), append=True),
    ]
    log(f"{name}: training {model.count_params():,} parameters for up to {epochs} epochs on {len(x_train)} images")
    start = time.perf_counter()
    val = _val_ds(x_val, y_val, 256)
    if fitted is not model:
        val = val.map(lambda a, b: (a, {"logits": b[0], "subtype": b[1]}))
    fitted.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=2)
    minutes = (time.perf_counter() - start) / 60
    model.save(path)
    (out / f"{name}.train.json").write_text(json.dumps({"minutes": minutes}))
    shutil.rmtree(out / f"backup-{name}", ignore_errors=True)
    return model, minutes, True


def recalibrate_batch_norm(model: keras.Model, x: np.ndarray, batches: int = 200, batch: int = 64) -> None:
    """Re-estimate batch-norm statistics on clean (not augmented) training images.

    At a high learning rate the running averages lag behind the weights, and augmented
    batches differ from the clean images the app feeds; "precise BN" removes both gaps.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    for layer in norms:
        layer.momentum = 0.9
    rng = np.random.default_rng(3)
    for _ in range(batches):
        idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        model(tf.cast(x[idx], tf.float32), training=True)
    for layer in norms:
        layer.momentum = 0.99


def predict(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and Unfamiliar features for a uint8 array, in batches."""
    extractor = export.feature_model(model)
    logits, feats = [], []
    for start in range(0, len(x), 256):
        lo, fe, _ = extractor(tf.cast(x[start:start + 256], tf.float32), training=False)
        logits.append(lo.numpy())
        feats.append(fe.numpy())
    return np.concatenate(logits), np.concatenate(feats)


def ood_scores(features: np.ndarray, ood: dict) -> np.ndarray:
    z = (features - ood["centre"]) @ ood["whiten"]
    wm = ood["means"] @ ood["whiten"]
    return (((z[:, None, :] - wm[None]) ** 2).sum(-1) / z.shape[1]).min(axis=1)


def bench_onnx(proto_bytes: bytes, shape: tuple[int, int], batch: int, seconds: float = 3.0) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(proto_bytes, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 255, (batch, *shape, 3), dtype=np.uint8)
    for _ in range(3):
        session.run(None, {"image": x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"image": x})
        n += batch
    return n / (time.perf_counter() - start)


# --- robustness -------------------------------------------------------------------------

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


def decide(probs: np.ndarray, decision: float) -> np.ndarray:
    """The shipped decision rule: two classes at the model's threshold, otherwise the top class."""
    return (probs[:, 1] >= decision).astype(int) if probs.shape[1] == 2 else probs.argmax(1)


def fraction_mae(patients: dict, ids: list[str]) -> float:
    """Mean absolute error of the predicted IDC fraction over the given patients."""
    return float(np.mean([abs(patients[p]["predicted"] - patients[p]["true"]) for p in ids]))


def robustness(model, cfg, classes, arrays, temperature, review_t, ood, ood_t, external: Path | None, spec,
               decision: float = 0.5, complete: list[str] | None = None) -> dict:
    """Accepted-call accuracy vs share accepted: in-domain, under stain shifts, at another lab.

    Calls use the shipped decision rule (the IDC threshold for two classes); for IDC each
    condition also reports the complete test patients' IDC-fraction error."""
    result: dict = {}

    def assess(x, y, with_patients: bool = False):
        logits, feats = predict(model, x)
        probs = calibration.softmax(logits, temperature)
        preds = decide(probs, decision)
        correct = preds == y
        unfamiliar = ood_scores(feats, ood) > ood_t
        conf = probs.max(1)
        accepted = (conf >= review_t) & ~unfamiliar
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
        return {"complete_fraction_mae": fraction_mae(idc_patients(test_items, p_idc, decision, y), complete)}

    per_patient = bool(complete)
    x_test, y_test, test_items = arrays["test"]
    result["in_domain"] = assess(x_test, y_test, per_patient)
    for name, (scale, shift) in STAIN_SHIFTS.items():
        result[f"stain shift: {name}"] = assess(stain_shift(x_test, scale, shift), y_test, per_patient)
    fullres = external.parent / "pbc_fullres_samples" if external is not None else None
    if fullres is not None and fullres.is_dir() and cfg.task == "blood-differential":
        result["full resolution vs half size"] = fullres_consistency(model, classes, spec, fullres,
                                                                     external.parent / "pbc", temperature)
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


def idc_maps(items: list, p_idc: np.ndarray, patients: list[str], patch: int):
    """Per-patient grids of P(IDC) and truth; `items` row for row with `p_idc`, `patch` the tile's side."""
    maps = []
    for pid in patients:
        cells = [(patch_xy(i.path), p, i.label) for i, p in zip(items, p_idc, strict=True) if i.group == pid]
        cells = [c for c in cells if c[0]]
        if not cells:
            continue
        w = max(x for (x, _), _, _ in cells) // patch + 1
        h = max(y for (_, y), _, _ in cells) // patch + 1
        predicted = np.full((h, w), np.nan)
        truth = np.full((h, w), np.nan)
        for (x, y), p, label in cells:
            predicted[y // patch, x // patch] = p
            truth[y // patch, x // patch] = label
        maps.append((pid, predicted, truth))
    return maps


# --- the run ------------------------------------------------------------------------------

def run(task: str, data: Path, out: Path, epochs: int | None = None, seed_epochs: int | None = None,
        limit: int | None = None, ship: Path | None = None, external: Path | None = None,
        record: bool = True, skip_seed: bool = False, widths: tuple[int, ...] | None = None, notes: str = "",
        scale_min: float | None = None, stem_stride: int | None = None, ema: float | None = None,
        hed_sigma: float | None = None) -> dict:
    cfg = TASKS[task]
    if widths:
        cfg = dataclasses.replace(cfg, widths=widths)
    if stem_stride:
        cfg = dataclasses.replace(cfg, stem_stride=stem_stride)
    if ema is not None:
        cfg = dataclasses.replace(cfg, ema=ema)
    if hed_sigma is not None:
        cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, hed_sigma=hed_sigma))
    if scale_min:
        cfg = dataclasses.replace(cfg, augment=dataclasses.replace(cfg.augment, scale_min=scale_min))
    out.mkdir(parents=True, exist_ok=True)
    trained_by = lab_book.git_sha()  # the commit that trains the weights, not the one at export time
    epochs = epochs or cfg.epochs
    seed_epochs = seed_epochs or cfg.seed_epochs
    spec = InputSpec(cfg.input_size, cfg.input_size, "area", cfg.small_input)

    log(f"1/8 split {data}")
    if task == "blood":
        dataset = split_blood(data, limit_per_class=limit)
    else:
        patients = sorted(p.name for p in data.iterdir() if p.is_dir())[:limit] if limit else None
        dataset = split_idc(data, patients)
    classes = dataset.classes
    n_classes = len(classes)
    log(f"    split {dataset.split_hash()}: " + json.dumps({s: len(dataset.items[s]) for s in SPLITS})
        + f"; dropped {len(dataset.report['duplicates_dropped'])} duplicates, "
        f"{len(dataset.report['label_conflicts_dropped'])} label conflicts")
    for conflict in dataset.report["label_conflicts_dropped"]:
        log(f"    label conflict dropped: {conflict}")

    log("2/8 decode once (the app's own preprocessing) and cache")
    arrays = cached_arrays(dataset, spec, out)
    dataset.save_lists(out)
    x_test, y_test = arrays["test"].x, arrays["test"].y
    x_val, y_val = arrays["val"].x, arrays["val"].y
    shape = (cfg.input_size, cfg.input_size, 3)

    results: dict = {"task": task, "classes": classes, "split_hash": dataset.split_hash(), "counts": dataset.counts()}
    histories = {}
    if not skip_seed:
        log("3/8 seed model (the reference recipe)")
        seed_builder = architectures.seed_blood if task == "blood" else architectures.seed_idc
        keras.utils.set_random_seed(1)
        seed, seed_minutes, seed_fresh = train_model("seed", seed_builder(shape, n_classes), arrays, cfg, out,
                                                     seed_epochs, True)
        seed_logits, _ = predict(seed, x_test)
        results["seed"] = evaluate.classification_metrics(y_test, seed_logits.argmax(1), classes)
        if task == "idc":
            results["seed"].update(evaluate.binary_metrics(y_test, calibration.softmax(seed_logits)[:, 1], 0.5))
        histories["seed"] = evaluate.read_history(out / "seed.history.csv")
        if record and seed_fresh:
            _record(cfg, "seed", seed, seed_minutes, histories["seed"], results["seed"], {"recipe": "reference"})

    log("4/8 our model")
    keras.utils.set_random_seed(2)
    ours = architectures.slidenet(shape, n_classes, cfg.widths, name="slidenet", stem_stride=cfg.stem_stride)
    ours, minutes, fresh = train_model("slidenet", ours, arrays, cfg, out, epochs, False)
    recalibrate_batch_norm(ours, arrays["train"].x)
    histories["slidenet"] = evaluate.read_history(out / "slidenet.history.csv")

    log("5/8 calibrate on val")
    val_logits, _ = predict(ours, x_val)
    temperature = calibration.fit_temperature(val_logits, y_val)
    val_probs = calibration.softmax(val_logits, temperature)
    decision = 0.5
    if task == "idc":
        decision = calibration.balanced_accuracy_threshold(val_probs[:, 1], y_val)
    val_preds = decide(val_probs, decision)
    tradeoff = calibration.review_tradeoff(val_probs, y_val, val_preds)
    review_t = calibration.choose_review_threshold(tradeoff, cfg.review_accuracy, cfg.review_budget)
    val_accuracy = float((val_preds == y_val).mean())
    log(f"    val accuracy {val_accuracy:.4f}, temperature {temperature:.3f}, review threshold {review_t}, "
        f"decision threshold {decision}")

    log("6/8 evaluate on the test split (once)")
    test_logits, test_feats = predict(ours, x_test)
    raw = calibration.softmax(test_logits)
    probs = calibration.softmax(test_logits, temperature)
    preds = decide(probs, decision)
    ece_before, table_before = calibration.reliability(raw, y_test)
    ece_after, table_after = calibration.reliability(probs, y_test)
    ours_metrics = evaluate.classification_metrics(y_test, preds, classes)
    ours_metrics.update({"ece_before": ece_before, "ece_after": ece_after, "val_accuracy_clean": val_accuracy})
    if task == "idc":
        ours_metrics.update(evaluate.binary_metrics(y_test, probs[:, 1], decision))
        patients = idc_patients(arrays["test"].items, probs[:, 1], decision, y_test)
        complete = [p for p in dataset.report["patients"]["test"] if patients.get(p, {}).get("n", 0) > 300]
        ours_metrics["patients"] = patients
        ours_metrics["complete_patients"] = complete
        if complete:
            ours_metrics["complete_fraction_mae"] = fraction_mae(patients, complete)
        ours_metrics["all_patients_fraction_mae"] = float(np.mean([abs(v["predicted"] - v["true"]) for v in patients.values()]))
        evaluate.plot_heatmaps(idc_maps(arrays["test"].items, probs[:, 1], complete, cfg.input_size), out / "heatmaps.png")
    results["ours"] = ours_metrics
    results.update({"val_accuracy": val_accuracy,
                    "temperature": temperature, "review_threshold": review_t, "decision_threshold": decision,
                    "review_tradeoff_val": tradeoff})
    evaluate.plot_confusion(ours_metrics["confusion"], classes, out / "confusion.png", f"{cfg.key}: test split")
    evaluate.plot_curves(histories, out / "curves.png")
    evaluate.plot_reliability(table_before, table_after, (ece_before, ece_after), out / "reliability.png")
    log(f"    test accuracy {ours_metrics['accuracy']:.4f}, macro-F1 {ours_metrics['macro_f1']:.4f}, "
        f"ECE {ece_before:.4f} -> {ece_after:.4f}")

    log("7/8 Unfamiliar detector (Mahalanobis, two depths) fitted on train, threshold on val")
    _, train_feats = predict(ours, arrays["train"].x)
    ood = export.fit_ood(train_feats, arrays["train"].y, n_classes)
    _, val_feats = predict(ours, x_val)
    ood_t = float(np.percentile(ood_scores(val_feats, ood), 99.0))
    results["ood_threshold"] = ood_t
    results["robustness"] = robustness(ours, cfg, classes, arrays, temperature, review_t, ood, ood_t,
                                       external if task == "blood" else None, spec, decision,
                                       ours_metrics.get("complete_patients"))

    log("8/8 export to ONNX and prove parity")
    serve = export.serving_function(ours, temperature, ood, cfg.input_size, cfg.input_size)
    recipe = {"widths": cfg.widths, "stem_stride": cfg.stem_stride, "ema": cfg.ema, "epochs": epochs,
              "batch": cfg.batch, "lr": cfg.learning_rate, "augment": cfg.augment.as_dict(),
              "balanced": cfg.balanced, "subtype_weight": cfg.subtype_weight}
    metadata = build_metadata(cfg, classes, results, dataset, temperature, review_t, decision, ood_t,
                              trained_by, recipe)
    proto = export.to_onnx(serve, metadata)
    parity_images = x_test[:max(256, min(len(x_test), 512))]
    results["parity"] = export.prove_parity(serve, proto, parity_images)
    results["speed_images_per_s"] = bench_onnx(proto.SerializeToString(), (cfg.input_size, cfg.input_size),
                                               64 if task == "blood" else 256)
    results["training_minutes"] = minutes
    export.write_model(proto, out / f"{cfg.key}.onnx")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    write_card(out / f"{cfg.key}.card.md", cfg, results, metadata)
    if record and fresh:
        _record(cfg, "slidenet", ours, minutes, histories["slidenet"], ours_metrics, recipe, notes, trained_by)
    if ship:
        ship_model(out, ship, cfg.key)
    log(f"done: {out / (cfg.key + '.onnx')}")
    return results


def _record(cfg, name, model, minutes, history, metrics_, params, notes: str = "", sha: str = "") -> None:
    lab_book.append({
        "date": dt.datetime.now().isoformat(timespec="seconds"), "task": cfg.task, "name": name,
        "parameters": int(model.count_params()), "hyper": params,
        "epochs": len(history.get("loss", [])),
        "train_accuracy": history.get("accuracy", [None])[-1], "val_accuracy": history.get("val_accuracy", [None])[-1],
        "test_accuracy": metrics_["accuracy"], "macro_f1": metrics_["macro_f1"], "minutes": minutes,
        "val_accuracy_clean": metrics_.get("val_accuracy_clean"),
        "git_sha": sha or lab_book.git_sha(), "notes": notes,
    })


def build_metadata(cfg, classes, results, dataset, temperature, review_t, decision, ood_t, trained_by: str,
                   recipe: dict) -> dict:
    table = BLOOD_CLASSES if cfg.task == "blood-differential" else IDC_CLASSES
    ours = results["ours"]
    metrics_ = {"accuracy": ours["accuracy"], "macro_f1": ours["macro_f1"], "balanced_accuracy": ours["balanced_accuracy"],
                "per_class_recall": {c: v["recall"] for c, v in ours["per_class"].items()}, "n": ours["n"],
                "ece": ours["ece_after"]}
    for key in ("f1_idc", "roc_auc", "pr_auc", "complete_fraction_mae"):
        if key in ours:
            metrics_[key] = ours[key]
    return {
        "slidetally.schema": SCHEMA,
        "task": cfg.task,
        "display_name": cfg.display_name,
        "version": cfg.version,
        "classes": [{"key": c, "label": table.get(c, (c.title(), "other"))[0], "group": table.get(c, ("", "other"))[1],
                     "hotkey": str(i + 1)} for i, c in enumerate(classes)],
        "input_size": [cfg.input_size, cfg.input_size],
        "resize": "area",
        "small_input": cfg.small_input,
        "temperature": round(temperature, 6),
        "review_threshold": review_t,
        "decision_threshold": decision,
        "ood_threshold": round(ood_t, 6),
        "metrics": metrics_,
        "dataset": {"name": "PBC (Acevedo et al. 2020)" if cfg.task == "blood-differential" else
                    "Breast Histopathology Images (Janowczyk & Madabhushi 2016)",
                    "split_hash": dataset.split_hash(), "counts": dataset.counts()},
        "provenance": {"trainer_git_sha": trained_by, "recipe": recipe, "tensorflow": tf.__version__, "keras": keras.__version__,
                       "onnxruntime": ort.__version__, "python": platform.python_version(),
                       "date": dt.datetime.now().isoformat(timespec="seconds")},
    }


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
