"""Site adaptation measured on labs the base model never saw: for each site, fit an adaptation
on part of its cells and classify the rest through the grafted ONNX model (never the same
cells), against the base model zero-shot on those same held-out cells.

    .venv/bin/python scripts/site_adaptation_eval.py [--model resources/models/blood-pbc8.onnx]
        [--fit-share 0.5] [--repeats 5] [--markdown out.md]

Sites: external_bccd, external_zheng/tecom, external_zheng/cellavision_blog (three other labs),
and a stain- and scale-shifted copy of the PBC full-resolution samples (a fourth kind of shift;
some of those 200 images were in the base model's training split, so its zero-shot row is optimistic).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # no telemetry, whatever the environment says
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from desktop.core.inference.decision import decide  # noqa: E402
from desktop.core.inference.imaging import load_image, load_prepared  # noqa: E402
from desktop.core.inference.model import Model  # noqa: E402
from desktop.core.lab.adaptation import SiteSet, adapt, rule_figures  # noqa: E402
from desktop.core.lab.graft import read_head  # noqa: E402
from desktop.core.lab.site_cells import cells_from_folder  # noqa: E402
from desktop.core.lab.site_model import build_site_model, prove_graft, site_metadata  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SITES = {"BCCD": DATA / "external_bccd", "Tecom (Zheng)": DATA / "external_zheng" / "tecom",
         "CellaVision blog (Zheng)": DATA / "external_zheng" / "cellavision_blog"}


def shifted_pbc(out: Path) -> Path:
    """PBC originals with another lab's look: 1.6x magnification, softer focus, another stain balance."""
    source = DATA / "pbc_fullres_samples"
    for path in sorted(source.glob("*/*.jpg")):
        rgb = load_image(path).astype(np.float32)
        h, w = rgb.shape[:2]
        ch, cw = int(h / 1.6), int(w / 1.6)
        crop = rgb[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
        crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_CUBIC)
        crop = cv2.GaussianBlur(crop, (0, 0), 1.5)
        od = -np.log(np.clip(crop, 1, 255) / 255.0)
        od *= np.array([1.35, 0.8, 1.1], np.float32)  # more red-channel absorbance, less green: another stain
        shifted = np.clip(255.0 * np.exp(-od), 0, 255).astype(np.uint8)
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(shifted, cv2.COLOR_RGB2BGR))
    return out


def stratified_split(labels: np.ndarray, share: float, rng) -> np.ndarray:
    fit = np.zeros(len(labels), bool)
    for k in np.unique(labels):
        where = np.flatnonzero(labels == k)
        rng.shuffle(where)
        fit[where[:max(1, round(share * len(where)))] if len(where) > 1 else []] = True
    return fit


def evaluate(model: Model, folder: Path, share: float, repeats: int) -> dict:
    info = model.info
    cells = cells_from_folder(folder, info)
    images = np.stack([load_prepared(c.path, info.input) for c in cells])
    labels = np.array([c.label for c in cells])
    probs, ood, feats = model.predict_with_features(images)
    head = read_head(__import__("onnx").load(str(info.path)))
    rows = {"zero-shot": [], "adapted": []}
    seconds = []
    for r in range(repeats):
        fit = stratified_split(labels, share, np.random.default_rng(r))
        test = ~fit
        site = SiteSet(feats[fit].astype(np.float64), labels[fit], np.array([str(i) for i in np.flatnonzero(fit)]),
                       probs[fit].astype(np.float64), None if ood is None else ood[fit].astype(np.float64))
        start = time.perf_counter()
        adaptation = adapt(site, head, info.class_keys, info.review_threshold, info.ood_threshold,
                           info.decision_threshold)
        proto = build_site_model(model, adaptation, site_metadata(model, adaptation, "eval", 1, "eval", {}))
        prove_graft(proto, adaptation, images[fit][:32])
        seconds.append(time.perf_counter() - start)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        p_site, ood_site = session.run(["probabilities", "ood_score"], {"image": images[test]})
        rows["zero-shot"].append(rule_figures(probs[test], None if ood is None else ood[test], labels[test],
                                              info.review_threshold, info.ood_threshold, info.decision_threshold))
        rows["adapted"].append(rule_figures(p_site, ood_site, labels[test], adaptation.review_threshold,
                                            adaptation.ood_threshold))
        assert (decide(p_site, ood_site, adaptation.review_threshold, adaptation.ood_threshold).top >= 0).all()
    summary = {}
    for name, figs in rows.items():
        summary[name] = {k: (float(np.nanmean([getattr(f, k) for f in figs])), float(np.nanstd([getattr(f, k) for f in figs])))
                         for k in ("accuracy", "balanced_accuracy", "accepted_share", "accepted_accuracy")}
    summary["n"] = len(labels)
    summary["n_test"] = int(len(labels) - round(share * len(labels)))
    summary["adapt_seconds"] = float(np.mean(seconds))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "resources" / "models" / "blood-pbc8.onnx"))
    parser.add_argument("--fit-share", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    model = Model(Path(args.model))
    lines = [f"Fit on {args.fit_share:.0%} of each site's cells (stratified by class), classify the other "
             f"{1 - args.fit_share:.0%} through the grafted ONNX; mean ± SD over {args.repeats} random splits.", "",
             "| site | cells (held out) | rule | accuracy | balanced accuracy | accepted | right among accepted |",
             "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        sites = dict(SITES, **{"PBC, stain + 1.6x scale shift": shifted_pbc(Path(tmp) / "pbc-shift")})
        for name, folder in sites.items():
            s = evaluate(model, folder, args.fit_share, args.repeats)
            for rule in ("zero-shot", "adapted"):
                f = s[rule]
                cell = lambda k, f=f: f"{f[k][0]:.3f} ± {f[k][1]:.3f}"
                lines.append(f"| {name} | {s['n']} ({s['n_test']}) | {rule} | {cell('accuracy')} | "
                             f"{cell('balanced_accuracy')} | {cell('accepted_share')} | {cell('accepted_accuracy')} |")
            print(f"{name}: adapt took {s['adapt_seconds']:.1f} s per fit", file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
