"""The card of a model derived from a shipped one without retraining (a front end added by
graph surgery): the base card, then what changed, measured side by side on the same images.

    .venv/bin/python -m scripts.derived_card BASE.onnx DERIVED.onnx BASE.card.md OUT.card.md \
        [--cache DIR] [--speed-images 4096]

Every figure goes through the app's own path (`desktop.core.inference.model.Model`, the shipped decision
rule `decide`): val and test accuracy, macro-F1 and per-class recall on the base model's split,
zero-shot figures at the other labs' sites (`scripts/measure/zero_shot.py`), and model-alone speed of
both models, alternated in one run on one batch (run it on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import numpy as np
from sklearn.metrics import f1_score

from desktop.core.inference.decision import decide
from desktop.core.inference.model import Model
from scripts.measure.zero_shot import SITES, site_figures
from trainer.data import cached_arrays, split_blood

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "pbc"


def split_figures(model: Model, x: np.ndarray, y: np.ndarray) -> dict:
    info = model.info
    probs = model.probabilities_in_batches(x, 256)
    calls = decide(probs, None, info.review_threshold, info.ood_threshold, info.decision_threshold).top
    recall = {c.key: float((calls[y == k] == k).mean()) for k, c in enumerate(info.classes) if (y == k).any()}
    return {"accuracy": float((calls == y).mean()), "macro_f1": float(f1_score(y, calls, average="macro")),
            "recall": recall, "calls": calls}


def model_alone(models: list[Model], batch: np.ndarray, rounds: int) -> list[float]:
    """Images/s of each model on the same batch, alternating so both see the same machine."""
    seconds = [0.0] * len(models)
    for model in models:
        model.predict(batch)  # warm-up
    for _ in range(rounds):
        for i, model in enumerate(models):
            start = time.perf_counter()
            model.predict(batch)
            seconds[i] += time.perf_counter() - start
    return [rounds * len(batch) / s for s in seconds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", type=Path)
    parser.add_argument("derived", type=Path)
    parser.add_argument("base_card", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")))
    parser.add_argument("--speed-images", type=int, default=4096)
    parser.add_argument("--labels", nargs=2, metavar=("BASE", "DERIVED"), help="what the note calls them, e.g. v2 v3")
    args = parser.parse_args(argv)
    base, derived = Model(args.base), Model(args.derived)
    arrays = cached_arrays(split_blood(DATA), base.info.input, args.cache)
    labels = args.labels or ("base", "derived")
    names = tuple(f"{label}: metadata version {m.info.version}" for label, m in zip(labels, (base, derived)))
    figures = {split: [split_figures(m, arrays[split].x, arrays[split].y) for m in (base, derived)]
               for split in ("val", "test")}
    batch = arrays["test"].x[:64]
    speed = model_alone([base, derived], batch, max(1, args.speed_images // len(batch)))
    sites = {site: [site_figures(m, folder) for m in (base, derived)] for site, folder in SITES.items() if folder.is_dir()}

    provenance = derived.info.provenance
    lines = [f"## Version {derived.info.version}: {provenance.get('white_balance', {}).get('by', 'derived')}", "",
             f"This file is the {labels[0]} weights (metadata version {base.info.version}; trained as described above) "
             "with a front end "
             "inserted in front of them; nothing was retrained. Measured here side by side, through the app's "
             "own model loading and decision rule, on the same images:", "",
             f"| figure | {names[0]} | {names[1]} |", "|---|---|---|"]
    for split in ("val", "test"):
        old, new = figures[split]
        label = "val (the split runs are chosen by)" if split == "val" else "test (used for no choice)"
        lines.append(f"| {label}: accuracy | {old['accuracy']:.4f} | {new['accuracy']:.4f} |")
        lines.append(f"| {split}: macro-F1 | {old['macro_f1']:.4f} | {new['macro_f1']:.4f} |")
        for key in old["recall"]:
            lines.append(f"| {split}: {key} recall | {old['recall'][key]:.3f} | {new['recall'][key]:.3f} |")
        same = float((old["calls"] == new["calls"]).mean())
        lines.append(f"| {split}: same call as {labels[0]} | - | {same:.4f} |")
    for site, (old, new) in sites.items():
        lines.append(f"| zero-shot {site} ({old.n} cells): balanced accuracy | {old.balanced_accuracy:.3f} | "
                     f"{new.balanced_accuracy:.3f} |")
        lines.append(f"| zero-shot {site}: accuracy / right among accepted | {old.accuracy:.3f} / "
                     f"{old.accepted_accuracy:.3f} | {new.accuracy:.3f} / {new.accepted_accuracy:.3f} |")
    lines.append(f"| model alone, images/s (batch {len(batch)}, alternated in one run) | {speed[0]:,.0f} | "
                 f"{speed[1]:,.0f} |")
    wb = provenance.get("white_balance")
    if wb:
        lines += ["", f"White balance reference (train split's mean bright background, RGB): {wb['reference']}; "
                  f"quantile {wb['quantile']}."]
    body = args.base_card.read_text(encoding="utf-8")
    body = body.replace(f"version {base.info.version},", f"version {derived.info.version} ({labels[1]}: the "
                        f"{labels[0]} weights, metadata version {base.info.version}, with the front end below),", 1)
    args.out.write_text(body.rstrip() + "\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    summary = {"val": [f["accuracy"] for f in figures["val"]], "test": [f["accuracy"] for f in figures["test"]],
               "speed": speed, "sites": {s: [v.balanced_accuracy for v in pair] for s, pair in sites.items()}}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
