"""INT8 (static, QDQ) quantisation of a blood model's convolutions, and whether it may ship.

    .venv/bin/python -m scripts.measure.quantize_model resources/models/blood-pbc8.onnx --out /tmp/blood-int8.onnx

Calibrated on train-split images (never test). The parity rule for a quantised model,
checked on the val split: the same top-1 call as the float model on >= 99.5% of images and
accuracy within 0.1 point; only then is the test split read, once, to report the change.
Speed: both models side by side in one run, ONNX Runtime alone on all cores, batch 64.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from desktop.core.inference.imaging import load_prepared
from desktop.core.inference.model import Model
from trainer.data import split_blood

ROOT = Path(__file__).resolve().parents[2]

DATA = ROOT.parent / "shared" / "data" / "pbc"
AGREEMENT = 0.995
ACCURACY_DELTA = 0.001


class Images(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 32):
        self.batches = iter([{"image": images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)


def decode(items, spec) -> tuple[np.ndarray, np.ndarray]:
    return np.stack([load_prepared(i.path, spec) for i in items]), np.array([i.label for i in items])


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["probabilities"], {"image": x[i:i + 256]})[0] for i in range(0, len(x), 256)])


def speed(path: Path, x: np.ndarray, seconds: float = 5.0) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    batch = x[:64]
    for _ in range(3):
        session.run(None, {"image": batch})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"image": batch})
        n += len(batch)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calibration", type=int, default=512, help="train images to calibrate on")
    args = parser.parse_args(argv)
    spec = Model(args.model).info.input
    dataset = split_blood(DATA)
    rng = np.random.default_rng(0)
    train = [dataset.items["train"][i] for i in rng.choice(len(dataset.items["train"]), args.calibration, replace=False)]
    calib_x, _ = decode(train, spec)
    quantize_static(str(args.model), str(args.out), Images(calib_x), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    val_x, val_y = decode(dataset.items["val"], spec)
    p_float, p_int8 = predict(args.model, val_x), predict(args.out, val_x)
    agreement = float((p_float.argmax(1) == p_int8.argmax(1)).mean())
    acc_float, acc_int8 = float((p_float.argmax(1) == val_y).mean()), float((p_int8.argmax(1) == val_y).mean())
    print(f"val: top-1 agreement {agreement:.4f}, accuracy {acc_float:.4f} (float) vs {acc_int8:.4f} (int8), "
          f"max |dp| {np.abs(p_float - p_int8).max():.3f}")
    print(f"speed (ONNX Runtime alone, batch 64, {os.cpu_count()} cores): float {speed(args.model, val_x):.0f} images/s, "
          f"int8 {speed(args.out, val_x):.0f} images/s, float again {speed(args.model, val_x):.0f} images/s")
    passes = agreement >= AGREEMENT and abs(acc_int8 - acc_float) <= ACCURACY_DELTA
    print(f"parity rule on val (agreement >= {AGREEMENT}, |d accuracy| <= {ACCURACY_DELTA}): "
          f"{'passes' if passes else 'fails'}")
    if passes:
        test_x, test_y = decode(dataset.items["test"], spec)
        t_float, t_int8 = predict(args.model, test_x), predict(args.out, test_x)
        print(f"test (read once): accuracy {(t_float.argmax(1) == test_y).mean():.4f} (float) vs "
              f"{(t_int8.argmax(1) == test_y).mean():.4f} (int8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
