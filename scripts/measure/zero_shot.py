"""Zero-shot: blood models on other labs' cells they never saw, every cell, with the shipped
decision rule (the app's `decide`: top class; review bar and Unfamiliar from the model).

    .venv/bin/python -m scripts.measure.zero_shot OLD.onnx NEW.onnx [--markdown out.md]

Balanced accuracy is the mean recall over the classes present at the site (5 white-cell
classes there; a cell called as any of the 8 classes counts only if it is its own class).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from desktop.core.inference.model import Model
from desktop.core.lab.adaptation import rule_figures
from desktop.core.lab.site_cells import cells_from_folder, extract
from scripts.measure.tables import emit

ROOT = Path(__file__).resolve().parents[2]

DATA = ROOT.parent / "shared" / "data"
SITES = {"BCCD": DATA / "external_bccd", "Tecom (Zheng)": DATA / "external_zheng" / "tecom",
         "CellaVision blog (Zheng)": DATA / "external_zheng" / "cellavision_blog"}


def site_figures(model: Model, folder: Path):
    info = model.info
    site, problems = extract(model, cells_from_folder(folder, info))
    for line in problems:
        print(f"skipped {line}", file=sys.stderr)
    return rule_figures(site.base_probabilities, site.base_ood, site.labels, info.review_threshold,
                        info.ood_threshold, info.decision_threshold)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", type=Path, nargs="+", help="ONNX blood models, oldest first")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    models = [Model(path) for path in args.models]
    names = [f"{m.info.display_name.split(' (')[0]} v{m.info.version} ({path.name})" for m, path in zip(models, args.models)]
    lines = ["| site | cells | model | accuracy | balanced accuracy | accepted | right among accepted |",
             "|---|---|---|---|---|---|---|"]
    for site, folder in SITES.items():
        if not folder.is_dir():
            continue
        for model, name in zip(models, names):
            f = site_figures(model, folder)
            lines.append(f"| {site} | {f.n} | {name} | {f.accuracy:.3f} | {f.balanced_accuracy:.3f} | "
                         f"{f.accepted_share:.3f} | {f.accepted_accuracy:.3f} |")
    return emit(lines, args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
