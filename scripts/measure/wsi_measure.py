"""Whole-slide input, measured: open time and classification time / peak RSS of a ~1-gigapixel pyramidal
TIFF, and the slide path against the patch folder on the complete IDC patients outside the test split.

Each patient's patches are assembled on white at their offsets, enlarged 16x (a 40x scan, 0.25 µm/px) and
written as a tiled pyramidal TIFF (JPEG q90 tiles, levels 1/4/16, resolution tags: tests/slides.py).

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python -m scripts.measure.wsi_measure --work /tmp/wsi [--patients 8913 8914 ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from desktop.core.report.session_report import session_report

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "idc"
# The complete patients that are not test patients (trainer/data.py, the IDC card): 8913 val, the rest train.
NOT_TEST = ("8913", "8914", "8917", "8918", "9041", "9077", "9078")


def build(patient: str, work: Path) -> tuple[Path, list]:
    from tests.slides import patient_patches, patient_slide

    path = work / f"{patient}-16x.tif"
    if path.exists():
        return path, patient_patches(DATA / patient)
    start = time.perf_counter()
    path, patches = patient_slide(DATA / patient, path, upsample=16, mpp=0.25)
    print(f"  built {path.name}: {path.stat().st_size / 2**20:.0f} MB in {time.perf_counter() - start:.0f} s", flush=True)
    return path, patches


def open_time(path: Path) -> dict:
    """What the window needs first: the slide opened at the model's scale and its overview (thumbnail + mask)."""
    code = ("import sys, time; t = time.perf_counter();"
            "from pathlib import Path; from desktop.core.inference.wsi import open_slide, tissue_grid;"
            "from desktop.core.inference.slide import PatchGrid; from desktop.core.inference.contract import IDC_MPP;"
            "t1 = time.perf_counter(); s = open_slide(Path(sys.argv[1]), IDC_MPP); t2 = time.perf_counter();"
            "g = tissue_grid(s, PatchGrid(50, 50)); t3 = time.perf_counter();"
            "print(t1 - t, t2 - t1, t3 - t2, s.dimensions[0] * s.dimensions[1], int(g.sum()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=ROOT, check=True)
    imports, opened, overview, pixels, tiles = out.stdout.split()
    return {"imports_s": float(imports), "open_s": float(opened), "overview_and_mask_s": float(overview),
            "gigapixels": int(pixels) / 1e9, "tissue_tiles": int(tiles)}


def classify_cli(path: Path, data: Path, out: Path) -> dict:
    """`slidetally-cli classify SLIDE` as the technician runs it: wall time and peak RSS (GNU time)."""
    start = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "desktop.cli", "classify", str(path),
                          "--model", "breast-idc", "--data-dir", str(data), "--csv", str(out / "cells.csv"),
                          "--summary", str(out / "summary.csv")], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(run.stderr)
    return {"wall_s": wall, "peak_rss_mb": int(run.stderr.strip().splitlines()[-1]) / 1024}


def compare(patient: str, path: Path, patches: list, data: Path) -> dict:
    """The slide path and the patch folder through one model, by grid position; fractions against the truth."""
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session

    model = Model(ROOT / "resources" / "models" / "breast-idc.onnx")
    results = {}
    for name, source, origin in (("slide", path, (1, 1)), ("folder", DATA / patient, (0, 0))):
        session = Session.open(source, model, data)
        start = time.perf_counter()
        session.classify()
        seconds = time.perf_counter() - start
        report = session_report(session)
        cells = session.cells()
        grid = model.info.patch
        calls = {grid.place((c.x + origin[0], c.y + origin[1])): c.ai_class for c in cells if c.ai_class}
        results[name] = {"calls": calls, "ai_fraction": report.ai_fraction.value,
                         "final_fraction": report.result("idc_fraction").value, "tiles": len(cells), "seconds": seconds}
        session.close()
    slide, folder = results["slide"], results["folder"]
    common = slide["calls"].keys() & folder["calls"].keys()
    truth = 100 * sum(c for *_, c, _ in patches) / len(patches)
    return {"patient": patient, "patches": len(patches), "slide_tiles": slide["tiles"], "common": len(common),
            "agree": sum(slide["calls"][k] == folder["calls"][k] for k in common) / max(1, len(common)),
            "true_fraction": round(truth, 1), "slide_ai": slide["ai_fraction"], "folder_ai": folder["ai_fraction"],
            "slide_final": slide["final_fraction"], "folder_final": folder["final_fraction"],
            "slide_s": round(slide["seconds"], 1), "folder_s": round(folder["seconds"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "slidetally-wsi")
    parser.add_argument("--patients", nargs="*", default=list(NOT_TEST))
    parser.add_argument("--big", default="8913", help="the patient whose 16x slide is the gigapixel benchmark")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    big, _ = build(args.big, args.work)
    timing = {**open_time(big), **classify_cli(big, Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp()))}
    print(json.dumps({"gigapixel_slide": big.name, **{k: round(v, 3) for k, v in timing.items()}}), flush=True)
    rows = []
    for patient in args.patients:
        path, patches = build(patient, args.work)
        row = compare(patient, path, patches, Path(tempfile.mkdtemp()))
        rows.append(row)
        print(json.dumps(row), flush=True)
    for key in ("slide_ai", "folder_ai", "slide_final", "folder_final"):
        errors = [abs(r[key] - r["true_fraction"]) for r in rows]
        print(f"{key}: fraction MAE {sum(errors) / len(errors):.1f} points, worst {max(errors):.1f}")
    print(f"tiles called alike (slide vs folder): {min(r['agree'] for r in rows):.4f} worst, "
          f"{sum(r['agree'] * r['common'] for r in rows) / sum(r['common'] for r in rows):.4f} over all")


if __name__ == "__main__":
    main()
