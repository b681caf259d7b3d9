"""Speed, side by side in one run: the seed's way of inference (Keras
`image_dataset_from_directory` + `model.predict`) vs the desktop's ONNX pipeline, with the
same trained model on the same folder of images.

    python -m trainer.compare_seed --keras runs/blood-v1/slidenet.keras \
        --onnx resources/models/blood-pbc8.onnx --folder ../shared/data/pbc_fullres_samples
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seed_way(keras_path: Path, folder: Path, size: int, repeat: int) -> tuple[int, float]:
    import keras
    import tensorflow as tf

    model = keras.models.load_model(keras_path)
    n, start = 0, time.perf_counter()
    for _ in range(repeat):
        ds = tf.keras.utils.image_dataset_from_directory(folder, labels=None, image_size=(size, size), batch_size=64,
                                                         shuffle=False, verbose=False)
        n += len(model.predict(ds, verbose=0))
    return n, time.perf_counter() - start


def desktop_way(onnx_path: Path, folder: Path, repeat: int) -> tuple[int, float]:
    from desktop.core.inference.model import Model
    from desktop.core.inference.scan import SourceFile, scan_folder
    from desktop.core.records.session import Session

    model = Model(onnx_path)
    files = scan_folder(folder)
    items = [SourceFile(f.path, f"{r}/{f.relative}", f.size, f.mtime) for r in range(repeat) for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        session = Session.open(folder, model, Path(tmp))
        n = session.classify_items(items, set())
        elapsed = time.perf_counter() - start
        session.close()
    return n, elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the folder")
    args = parser.parse_args(argv)
    # warm both once, then measure alternately so machine noise hits both alike
    seed_way(args.keras, args.folder, args.size, 1)
    desktop_way(args.onnx, args.folder, 1)
    n_seed, t_seed = seed_way(args.keras, args.folder, args.size, args.repeat)
    n_ours, t_ours = desktop_way(args.onnx, args.folder, args.repeat)
    seed_rate, our_rate = n_seed / t_seed, n_ours / t_ours
    print(f"seed way (image_dataset_from_directory + model.predict): {seed_rate:7.0f} images/s ({n_seed} images)")
    print(f"desktop pipeline (ONNX Runtime, decode+resize+infer+store): {our_rate:7.0f} images/s ({n_ours} images)")
    print(f"ratio desktop / seed: {our_rate / seed_rate:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
