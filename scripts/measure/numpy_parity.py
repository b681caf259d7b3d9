"""Does the bundle's NumPy, built against Debian's OpenBLAS (installer/build_numpy.sh), give the development install's
results?

Classifies the same folders with the bundled CLI and with the development install (the NumPy wheel with its own
OpenBLAS, scipy-openblas),
each with its own data folder, and compares every stored call and probability; then adapts the blood model to
the same verified cells with both and compares the fitted site heads and the time each took.

    .venv/bin/python -m scripts.measure.numpy_parity dist/slidetally/slidetally-cli [--per-class 40] [--patches 300]

The folders: the bundled samples, every n-th image of each class of ../shared/data/pbc and every n-th IDC patch of
../shared/data/idc (sorted, so the choice does not depend on the run); the verified cells: other PBC images.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
DEV = [sys.executable, "-c", "from desktop.cli import main; raise SystemExit(main())"]


def linked(folder: Path, files: list[Path]) -> Path:
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def every(found: list[Path], n: int, skip: int = 0) -> list[Path]:
    found = sorted(found)[skip:]
    return found[::max(1, len(found) // n)][:n]


def folders(tmp: Path, per_class: int, patches: int) -> dict[str, tuple[Path, str]]:
    chosen = {"samples-blood": (ROOT / "resources/samples/blood", "blood-pbc8"),
              "samples-idc": (ROOT / "resources/samples/breast-idc-9022", "breast-idc")}
    if (DATA / "pbc").is_dir():
        pbc = [f for c in sorted((DATA / "pbc").iterdir()) for f in every(list(c.glob("*.jpg")), per_class)]
        chosen["pbc"] = (linked(tmp / "pbc", pbc), "blood-pbc8")
    if (DATA / "idc").is_dir():
        chosen["idc"] = (linked(tmp / "idc", every(list((DATA / "idc").glob("*/*/*.png")), patches)), "breast-idc")
    return chosen


def run(cli: list[str], args: list[str], data: Path) -> tuple[float, str]:
    env = dict(os.environ, HOME=str(data / "home"), XDG_DATA_HOME=str(data))
    env.pop("QT_QPA_PLATFORM", None)
    start = time.perf_counter()
    out = subprocess.run([*cli, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cli[:1] + args)} failed:\n{out.stderr}")
    return time.perf_counter() - start, out.stdout


def stored(folder: Path, model: str, data: Path) -> dict[str, tuple]:
    from desktop.core.records.session import Session

    session = Session.open(folder, model, data / "SlideTally", archive=False)
    try:
        return {c.file: (c.ai_class, c.review, c.unfamiliar, np.array(c.probabilities, dtype=np.float64),
                         c.ood_score) for c in session.cells()}
    finally:
        session.close()


def compare_calls(name: str, folder: Path, model: str, bundle: Path, dev: Path) -> bool:
    """Calls, Review and Unfamiliar flags, probabilities and Unfamiliar scores of every image, bundle against dev."""
    from desktop.core.inference.catalog import resolve_model

    b, d = stored(folder, model, bundle), stored(folder, model, dev)
    assert set(b) == set(d), f"{name}: other files"
    calls = sum(b[f][:3] != d[f][:3] for f in b)
    prob = max(float(np.abs(b[f][3] - d[f][3]).max()) for f in b)
    same = sum(np.array_equal(b[f][3], d[f][3]) for f in b)
    print(f"{name:14} {model:11} {len(b):4} images: {calls} calls differ, {same} with identical probabilities "
          f"(largest difference {prob:.3g})")
    scored = [f for f in b if d[f][4] is not None]
    if scored:
        threshold = resolve_model(model).info.ood_threshold
        diff = np.array([abs(b[f][4] - d[f][4]) for f in scored])
        ood = np.array([d[f][4] for f in scored])
        moved = diff > 0
        margin = float(np.abs(ood[moved] - threshold).min()) if moved.any() else float("nan")
        print(f"{'':14} Unfamiliar score (threshold {threshold:g}): {int(moved.sum())} of {len(scored)} differ, "
              f"largest by {diff.max():.3g} ({float((diff / np.maximum(np.abs(ood), 1e-12)).max()):.2g} relative); "
              f"the closest of those to the threshold is {margin:.3g} from it")
    return calls == 0


def site_head(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(str(path)).graph.initializer}


def compare_adaptation(tmp: Path, bundle_cli: list[str], per_class: int) -> bool:
    cells = {c.name: every(list(c.glob("*.jpg")), per_class, skip=7) for c in sorted((DATA / "pbc").iterdir())}
    verified = tmp / "verified"
    for key, files in cells.items():
        linked(verified / key, files)
    heads, times = {}, {}
    for who, cli in (("bundle", bundle_cli), ("dev", DEV)):
        out = tmp / f"{who}-site.onnx"
        times[who], _ = run(cli, ["adapt", "--verified", str(verified), "--model", "blood-pbc8", "--site", "parity",
                                  "--out", str(out), "--approved-by", "parity",
                                  # the base model already calls its own training images right: keep the site head
                                  "--accept-loss", "parity check"], tmp / f"{who}-adapt-data")
        heads[who] = site_head(out)
    base = set(site_head(ROOT / "resources/models/blood-pbc8.onnx"))
    fitted = sorted(set(heads["dev"]) - base)  # the site head's tensors, not the base model's weights
    worst = max(float(np.abs(heads["bundle"][n] - heads["dev"][n]).max()) for n in fitted)
    print(f"site adaptation on {sum(map(len, cells.values()))} verified cells ({len(cells)} classes): "
          f"{len(fitted)} fitted tensors, largest difference {worst:.3g}; "
          f"bundle {times['bundle']:.1f} s, development install {times['dev']:.1f} s "
          f"(ratio {times['bundle'] / times['dev']:.2f})")
    return worst <= 1e-6


def fit_child(site_file: Path, out: Path) -> None:
    """Child: site adaptation's fit (cross-validated strength, temperature, head) on stored features, with this
    interpreter's NumPy; writes the fitted head in float64 and the time the fit took."""
    import onnx

    from desktop.core.inference.head import read_head
    from desktop.core.lab.adaptation import SiteSet, adapt

    saved = np.load(site_file)
    site = SiteSet(saved["features"], saved["labels"], saved["groups"], saved["base_probabilities"], saved["base_ood"])
    head = read_head(onnx.load(str(ROOT / "resources/models/blood-pbc8.onnx")))
    keys = [str(k) for k in saved["class_keys"]]
    start = time.perf_counter()
    a = adapt(site, head, keys, float(saved["review_threshold"]), float(saved["ood_threshold"]))
    took = time.perf_counter() - start
    np.savez(out, weights=a.site.weights, bias=a.site.bias, centroids=a.site.centroids,
             inverse_std=a.site.inverse_std, scalars=np.array([a.temperature, a.strength, a.review_threshold,
                                                               a.ood_threshold]), seconds=took)


def compare_fit(tmp: Path, build_python: str, verified: Path, rounds: int = 3) -> bool:
    """The fit alone in float64, on the same features: the build venv's python (the bundle's NumPy, built by
    build_numpy.sh against Debian's OpenBLAS) against the development install's (the wheel's OpenBLAS), alternated
    `rounds` times."""
    from desktop.core.inference.catalog import resolve_model
    from desktop.core.lab.site_cells import cells_from_folder, extract

    model = resolve_model("blood-pbc8")
    site, _ = extract(model, cells_from_folder(verified, model.info))
    site_file = tmp / "site.npz"
    np.savez(site_file, features=site.features, labels=site.labels, groups=site.groups,
             base_probabilities=site.base_probabilities, base_ood=site.base_ood, class_keys=model.info.class_keys,
             review_threshold=model.info.review_threshold, ood_threshold=model.info.ood_threshold)
    fits: dict[str, list] = {"bundle": [], "dev": []}
    for _ in range(rounds):
        for who, python in (("bundle", build_python), ("dev", sys.executable)):
            out = tmp / f"{who}-fit.npz"
            subprocess.run([python, "-m", "scripts.measure.numpy_parity", "--fit-child", str(site_file), str(out)],
                           cwd=ROOT, check=True, timeout=3600)
            fits[who].append(dict(np.load(out)))
    b, d = fits["bundle"][0], fits["dev"][0]
    worst = {k: float(np.abs(b[k] - d[k]).max()) for k in ("weights", "bias", "centroids", "inverse_std", "scalars")}
    tb, td = (sorted(float(f["seconds"]) for f in fits[w]) for w in ("bundle", "dev"))
    print(f"site adaptation's fit alone (float64, {len(site.labels)} cells, {site.features.shape[1]} features), "
          f"bundle's NumPy against the wheel's: largest difference {max(worst.values()):.3g} "
          f"({', '.join(f'{k} {v:.2g}' for k, v in worst.items())}); median time {tb[len(tb) // 2]:.2f} s against "
          f"{td[len(td) // 2]:.2f} s (ratio {tb[len(tb) // 2] / td[len(td) // 2]:.2f}; all: {tb}, {td})")
    return max(worst.values()) <= 1e-6


def main() -> None:
    if sys.argv[1:2] == ["--fit-child"]:
        fit_child(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cli", help="the bundled slidetally-cli (dist/slidetally/slidetally-cli)")
    parser.add_argument("--per-class", type=int, default=40, help="PBC images per class")
    parser.add_argument("--patches", type=int, default=300, help="IDC patches")
    parser.add_argument("--build-python", default=str(ROOT / ".venv-build/bin/python"),
                        help="the build venv's python, whose NumPy the bundle carries (for the fit alone)")
    parser.add_argument("--fit-only", action="store_true", help="only site adaptation (no classification)")
    args = parser.parse_args()
    bundle_cli = [str(Path(args.cli).absolute())]  # not resolved: the link's name picks the CLI
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (folder, model) in ({} if args.fit_only else folders(tmp, args.per_class, args.patches)).items():
            took = {}
            for who, cli in (("bundle", bundle_cli), ("dev", DEV)):
                took[who], _ = run(cli, ["classify", str(folder), "--model", model, "--csv", str(tmp / f"{who}-{name}.csv")],
                                   tmp / f"{who}-data")
            ok &= compare_calls(name, folder, model, tmp / "bundle-data", tmp / "dev-data")
            print(f"{'':14} bundle {took['bundle']:.1f} s, development install {took['dev']:.1f} s")
        if (DATA / "pbc").is_dir():
            ok &= compare_adaptation(tmp, bundle_cli, 30)
            ok &= compare_fit(tmp, args.build_python, tmp / "verified")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
