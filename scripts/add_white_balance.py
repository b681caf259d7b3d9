"""Put the white-balance front end (trainer/architectures.WhiteBalance) in front of an existing
contract model, by graph surgery and without retraining, and prove what it changes.

    .venv/bin/python -m scripts.add_white_balance IN.onnx OUT.onnx [--version 2.1.0]

The reference background level is measured on the model's own training split (the one in
its metadata's split hash) with the trainer's `background_reference`; the ops are inserted by the
trainer's own builder (trainer/white_balance_graph.py, the one every trained model's export uses,
under the node names the app serves split), and the script checks them against the Keras layer on
real images before writing anything. This is how blood v3 got its white balance from v2's weights.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from desktop.core.inference.model import Model
from trainer.data import cached_arrays, split_blood
from trainer.white_balance_graph import GraphLayoutError, with_white_balance

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pbc"
QUANTILE = 0.9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", default="2.1.0")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")),
                        help="folder for the decoded-split cache (a training run's folder reuses its own)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    from trainer.architectures import WhiteBalance, background_reference

    info = Model(args.model).info
    dataset = split_blood(DATA)
    arrays = cached_arrays(dataset, info.input, args.cache)
    reference = background_reference(arrays["train"].x, QUANTILE)
    base = onnx.load(str(args.model))
    try:
        built = with_white_balance(base, reference, QUANTILE, info.input.height, info.input.width)
    except GraphLayoutError as exc:
        raise SystemExit(f"{exc}; nothing written") from exc
    model, balanced, scale = built.model, built.balanced, built.scale
    meta = {p.key: p.value for p in model.metadata_props}
    provenance = json.loads(meta["provenance"])
    provenance["white_balance"] = {"reference": reference, "quantile": QUANTILE, "added_to": args.model.name,
                                   "by": "scripts/add_white_balance.py (graph surgery, no retraining)"}
    for prop in model.metadata_props:
        if prop.key == "provenance":
            prop.value = json.dumps(provenance)
        if prop.key == "version":
            prop.value = args.version
    # The inserted ops must equal the trainer's layer on real images.
    x = arrays["val"].x[:256]
    layer = WhiteBalance(reference, QUANTILE)
    expected = np.transpose(layer(tf.cast(x, tf.float32)).numpy() * scale + built.offset, (0, 3, 1, 2))
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.append(helper.make_tensor_value_info(balanced, TensorProto.FLOAT, None))
    got = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [balanced], {"image": x})[0]
    worst = float(np.abs(got - expected).max()) / scale
    print(f"front end vs Keras layer on {len(x)} val images: max |d| {worst:.2e} (pixel units)")
    if worst > 1e-2:
        raise SystemExit("the inserted ops do not match the trainer's WhiteBalance layer; nothing written")
    args.out.write_bytes(model.SerializeToString())
    print(f"reference {reference}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
