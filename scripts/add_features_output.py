"""Give an existing contract model the optional `features` output (graph surgery, no
retraining), proving that its probabilities and Unfamiliar scores do not change.

    .venv/bin/python -m scripts.add_features_output resources/models/blood-pbc8.onnx resources/samples/blood
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # no telemetry, whatever the environment says

import numpy as np
import onnx
import onnxruntime as ort

from desktop.core.inference.imaging import load_prepared
from desktop.core.inference.model import Model
from desktop.core.inference.scan import scan_folder
from desktop.core.lab.graft import read_head, with_features_output


def main(model_path: str, samples: str) -> int:
    path = Path(model_path)
    before = onnx.load(str(path))
    after = with_features_output(before)
    info = Model(path).info
    images = np.stack([load_prepared(f.path, info.input) for f in scan_folder(Path(samples))[:256]])
    old = ort.InferenceSession(before.SerializeToString(), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(after.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in old.get_outputs()]
    expected = old.run(outputs, {"image": images})
    got = new.run(outputs + ["features"], {"image": images})
    worst = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
    head = read_head(after)
    logits = got[-1].astype(np.float64) @ head.weights + head.bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    head_error = float(np.abs(p - got[outputs.index("probabilities")]).max())
    print(f"{path.name}: {len(images)} images, outputs changed by at most {worst:.1e}; "
          f"numpy head on `features` vs probabilities {head_error:.1e}; features {got[-1].shape[1]}")
    if worst > 0 or head_error > 1e-5:
        print("parity failed: nothing written", file=sys.stderr)
        return 1
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(after.SerializeToString())
    tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
