"""The evidence for an IDC model's slide-level step: val balanced accuracy and the complete val
slide's IDC fraction for several neighbour weights and radii, each with its own decision
threshold chosen on val for balanced accuracy (as the trainer chooses it).

    .venv/bin/python -m scripts.measure.idc_slide_step_sweep MODEL.onnx [--markdown out.md]

The model's own `slide_step` is ignored: it runs the raw patch probabilities through
`desktop.core.inference.slide_step.SlideStep` per patient, as `trainer/slides.slide_level` does.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from desktop.core.inference.model import Model
from desktop.core.inference.slide_step import SlideStep
from scripts.measure.tables import emit
from trainer.calibration import balanced_accuracy_threshold
from trainer.data import load_arrays, split_idc
from trainer.slides import COMPLETE_SLIDE_PATCHES, slide_level

ROOT = Path(__file__).resolve().parents[2]

DATA = ROOT.parent / "shared" / "data" / "idc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    model = Model(args.model)
    val, _ = load_arrays(split_idc(DATA).items["val"], model.info.input)
    p = model.probabilities_in_batches(val.x, 512)[:, 1]
    patients = np.array([item.group for item in val.items])
    complete = [q for q in np.unique(patients) if (patients == q).sum() > COMPLETE_SLIDE_PATCHES]
    lines = ["| radius | neighbour weight | threshold (val) | val balanced accuracy | "
             + " | ".join(f"val slide {q}: predicted IDC (true {val.y[patients == q].mean():.1%})" for q in complete)
             + " |", "|---|---|---|---|" + "---|" * len(complete)]
    size = model.info.patch.size
    for radius, weight in ((1, 0.0), (1, 0.3), (1, 0.5), (1, 0.7), (2, 0.3), (2, 0.5), (2, 0.7)):
        slide = slide_level(SlideStep(radius, weight), size)(p, val.items) if weight else p
        threshold = balanced_accuracy_threshold(slide, val.y)
        calls = slide >= threshold
        ba = balanced_accuracy_score(val.y, calls.astype(int))
        fractions = " | ".join(f"{calls[patients == q].mean():.1%}" for q in complete)
        lines.append(f"| {radius if weight else '-'} | {weight} | {threshold} | {ba:.4f} | {fractions} |")
    return emit(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
