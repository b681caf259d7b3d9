"""Put the white-balance front end (trainer/architectures.WhiteBalance) in front of an existing
contract model, by graph surgery and without retraining, and prove what it changes.

    .venv/bin/python -m scripts.add_white_balance IN.onnx OUT.onnx [--version 2.1.0]

The reference background level is measured on the model's own training split (the one in
its metadata's split hash) with the trainer's `background_reference`; the inserted ops are
the same as the layer's (4x4 average, 90th percentile by TopK, per-channel scale, clip at 255), and
the script checks them against the Keras layer on real images before writing anything.
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
from onnx import TensorProto, helper, numpy_helper

from desktop.core.inference.model import Model
from trainer.data import cached_arrays, split_blood

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "pbc"
QUANTILE = 0.9


def background_nodes(source: str, reference: list[float], height: int, width: int):
    """Nodes and constants that compute, from float NHWC `source`, the per-image channel scale
    `wb_scale3` [N, 3] = reference / bright background: the layer's ops, the 4x4 average as
    reshape + mean (no full-image transpose)."""
    rows, cols = height // 4, width // 4
    cells = rows * cols
    k = max(1, round((1 - QUANTILE) * cells))
    crop = height % 4 or width % 4
    consts = [numpy_helper.from_array(np.array(v, dtype=dt), name) for name, v, dt in (
        *((("wb_crop_start", [0, 0], np.int64), ("wb_crop_end", [rows * 4, cols * 4], np.int64),
           ("wb_crop_axes", [1, 2], np.int64)) if crop else ()),
        ("wb_blocks", [-1, rows, 4, cols, 4, 3], np.int64), ("wb_flat", [-1, cells, 3], np.int64),
        ("wb_k", [k], np.int64), ("wb_last_start", [k - 1], np.int64), ("wb_last_end", [k], np.int64),
        ("wb_axis", [2], np.int64), ("wb_one", 1.0, np.float32))]
    nodes = ([helper.make_node("Slice", [source, "wb_crop_start", "wb_crop_end", "wb_crop_axes"], ["wb_crop"])]
             if crop else [])
    nodes += [
        helper.make_node("Reshape", ["wb_crop" if crop else source, "wb_blocks"], ["wb_block6"]),
        helper.make_node("ReduceMean", ["wb_block6"], ["wb_pooled"], axes=[2, 4], keepdims=0),  # opset 17: attribute
        helper.make_node("Reshape", ["wb_pooled", "wb_flat"], ["wb_cells_last"]),
        helper.make_node("Transpose", ["wb_cells_last"], ["wb_cells"], perm=[0, 2, 1]),
        helper.make_node("TopK", ["wb_cells", "wb_k"], ["wb_top", "wb_top_idx"], axis=-1, largest=1, sorted=1),
        helper.make_node("Slice", ["wb_top", "wb_last_start", "wb_last_end", "wb_axis"], ["wb_bright3"]),
        helper.make_node("Max", ["wb_bright3", "wb_one"], ["wb_bright"]),
        helper.make_node("Div", ["wb_reference_col", "wb_bright"], ["wb_scale3"]),
    ]
    consts.append(numpy_helper.from_array(np.array(reference, np.float32).reshape(3, 1), "wb_reference_col"))
    return nodes, consts


def _constant(graph, name: str) -> float | None:
    found = [numpy_helper.to_array(i) for i in graph.initializer if i.name == name]
    return float(found[0]) if found and found[0].size == 1 else None


def _first_transpose(graph, source: str):
    """The exported graph's own path from the cast pixels to the first convolution:
    Mul(scale) -> Add(offset) -> Transpose(NHWC -> NCHW). Returns the transpose and the
    scale and offset, so the front end can act on the channels-first tensor."""
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    mul = readers[source][0]
    add = readers[mul.output[0]][0]
    transpose = readers[add.output[0]][0]
    scale = _constant(graph, mul.input[1])
    offset = _constant(graph, add.input[1])
    perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
    if (len(readers[source]) != 1 or mul.op_type != "Mul" or add.op_type != "Add" or transpose.op_type != "Transpose"
            or perm != [0, 3, 1, 2] or scale is None or offset is None):
        raise SystemExit("the graph does not start with Cast -> Mul -> Add -> Transpose(0,3,1,2); nothing written")
    return transpose, scale, offset


def with_white_balance(model: onnx.ModelProto, reference: list[float], height: int, width: int
                       ) -> tuple[onnx.ModelProto, str, float, float]:
    """The model with the front end: the background measured on the cast pixels (NHWC), the
    per-image scale applied after the graph's own transpose to channels-first, where ONNX
    Runtime broadcasts [N, 3, 1, 1] fast (in NHWC the same Mul cost as much as a convolution).
    Clip at 255 becomes clip at 255 * scale + offset there."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    cast = next(n for n in graph.node if n.op_type == "Cast" and list(n.input) == ["image"])
    transpose, scale, offset = _first_transpose(graph, cast.output[0])
    nodes, consts = background_nodes(cast.output[0], reference, height, width)
    position = list(graph.node).index(cast) + 1
    for i, node in enumerate(nodes):
        graph.node.insert(position + i, node)
    balanced = transpose.output[0]
    transpose.output[0] = "wb_nchw"
    consts += [numpy_helper.from_array(np.array([-1, 3, 1, 1], np.int64), "wb_shape"),
               numpy_helper.from_array(np.array(255.0 * scale + offset, np.float32), "wb_hi")]
    after = list(graph.node).index(transpose) + 1
    for i, node in enumerate([helper.make_node("Reshape", ["wb_scale3", "wb_shape"], ["wb_scale"]),
                              helper.make_node("Mul", ["wb_nchw", "wb_scale"], ["wb_scaled"]),
                              helper.make_node("Min", ["wb_scaled", "wb_hi"], [balanced])]):
        graph.node.insert(after + i, node)
    graph.initializer.extend(consts)
    onnx.checker.check_model(model)
    return model, balanced, scale, offset


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
    model, balanced, scale, offset = with_white_balance(base, reference, info.input.height, info.input.width)
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
    expected = np.transpose(layer(tf.cast(x, tf.float32)).numpy() * scale + offset, (0, 3, 1, 2))
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
