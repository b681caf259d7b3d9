"""Does the bundle's own OpenCV build (installer/build_opencv.sh) see images exactly as the wheel does?

For each image, both builds decode and fit it to each bundled model's input through the app's one path
(`imaging.load_prepared`), and the model classifies it; this prints how many inputs are bit-identical,
the largest pixel and probability differences, and how many calls differ.

    .venv/bin/python -m scripts.measure.opencv_parity "$(installer/build_opencv.sh .venv-build/bin/python)" [FOLDER ...]

Each build runs in its own process (one cv2 per interpreter); the wheel's is the development install's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"blood": ROOT / "resources/models/blood-pbc8.onnx", "idc": ROOT / "resources/models/breast-idc.onnx"}


def images(folders: list[Path], per_folder: int) -> list[Path]:
    """Every n-th image of each folder (sorted), so the choice does not depend on the run."""
    from desktop.core.inference.imaging import IMAGE_EXTENSIONS

    chosen = []
    for folder in folders:
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        step = max(1, len(found) // per_folder)
        chosen += found[::step][:per_folder]
    return chosen


def dump(paths_file: Path, out: Path) -> None:
    """Child: prepared inputs and probabilities of every image under each model, with this process's cv2."""
    import cv2

    from desktop.core.inference.imaging import UnreadableImage, load_prepared
    from desktop.core.inference.model import Model

    paths = [Path(line) for line in paths_file.read_text().splitlines()]
    arrays = {"cv2_file": np.array(cv2.__file__)}
    for name, model_path in MODELS.items():
        model = Model(model_path)
        inputs, ok = [], []
        for path in paths:
            try:
                inputs.append(load_prepared(path, model.info.input))
                ok.append(True)
            except UnreadableImage:
                ok.append(False)
        batch = np.stack(inputs)
        probabilities = model.probabilities_in_batches(batch, 64)
        arrays |= {f"{name}_inputs": batch, f"{name}_p": probabilities, f"{name}_ok": np.array(ok)}
    np.savez(out, **arrays)


def run_child(paths_file: Path, out: Path, opencv: Path | None) -> dict:
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1")
    env.pop("PYTHONPATH", None)
    if opencv is not None:
        env["PYTHONPATH"] = str(opencv)
    subprocess.run([sys.executable, __file__, "--dump", str(paths_file), str(out)], env=env, check=True, cwd=ROOT)
    return dict(np.load(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("opencv", nargs="?", type=Path, help="the folder build_opencv.sh printed")
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--per-folder", type=int, default=500)
    parser.add_argument("--dump", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dump:
        dump(*args.dump)
        return
    folders = args.folders or [ROOT / "resources/samples/blood", ROOT / "resources/samples/breast-idc-9022"]
    paths = images(folders, args.per_folder)
    with tempfile.TemporaryDirectory() as tmp:
        paths_file = Path(tmp) / "paths.txt"
        paths_file.write_text("\n".join(map(str, paths)))
        wheel = run_child(paths_file, Path(tmp) / "wheel.npz", None)
        own = run_child(paths_file, Path(tmp) / "own.npz", args.opencv)
    print(f"{len(paths)} images from {len(folders)} folder(s)")
    print(f"wheel: {wheel['cv2_file']}\nown:   {own['cv2_file']}")
    for name in MODELS:
        assert (wheel[f"{name}_ok"] == own[f"{name}_ok"]).all(), "the builds disagree on which files are readable"
        a, b = wheel[f"{name}_inputs"], own[f"{name}_inputs"]
        same = (a == b).reshape(len(a), -1).all(axis=1)
        pixel = np.abs(a.astype(int) - b.astype(int)).max() if len(a) else 0
        pa, pb = wheel[f"{name}_p"], own[f"{name}_p"]
        calls = int((pa.argmax(1) != pb.argmax(1)).sum())
        print(f"{name}: {same.sum()}/{len(a)} inputs bit-identical, max |pixel diff| {pixel}, "
              f"max |P diff| {np.abs(pa - pb).max():.2e}, top class differs on {calls}")


if __name__ == "__main__":
    main()
