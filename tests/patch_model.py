"""A synthetic IDC patch model of another patch size (32 px, not the shipped 50), and slides for it.

The model is real ONNX, built with onnx's helper API and carrying the shipped breast-idc model's
metadata with only the input size (and, when asked, the patch keys) changed: it calls a patch IDC
when its mean red is high, so a test paints the slide it wants the model to see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import MODELS, write_image

PATCH = 32
IDC_RGB = (200, 60, 100)  # mean red 200: P(IDC) ~ 0.999
NORMAL_RGB = (90, 50, 150)  # mean red 90: P(IDC) ~ 0.02
GLASS_RGB = (245, 245, 245)  # empty glass: not tissue, never tiled


def make_patch_model(path: Path, size: int = PATCH, extra_metadata: dict[str, str] | None = None) -> Path:
    """uint8 image [N, size, size, 3] -> probabilities [N, 2] (sigmoid of the mean red), ood_score [N] (0),
    features [N, 3] (the mean colour); metadata copied from resources/models/breast-idc.onnx."""
    import onnx
    from onnx import TensorProto, helper

    shipped = onnx.load(str(MODELS / "breast-idc.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in shipped.metadata_props}
    # a test that wants them declares them
    for key in ("slide_step", "patch_size", "patch_stride", "review_band", "colour_guard"):
        meta.pop(key, None)
    meta.update({"input_size": json.dumps([size, size]), "version": "0.0.32-test",
                 "display_name": f"Synthetic IDC ({size}x{size} patches)"})
    meta.update(extra_metadata or {})
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Identity", ["mean"], ["features"]),
        helper.make_node("MatMul", ["mean", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("ReduceSum", ["nothing", "last"], ["ood_score"], keepdims=0),
    ]
    inits = [
        # logit(IDC) - logit(normal) = 0.1 * (mean red - 128)
        helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [0.0, 0.1, 0.0, 0.0, 0.0, 0.0]),
        helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, -12.8]),
        helper.make_tensor("zero", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0]),
        helper.make_tensor("last", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes, "synthetic-idc", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def paint_slide(layout: list[str], step: int = PATCH) -> np.ndarray:
    """A tissue image from a text layout, one character a `step` px square: I IDC, N normal, . glass."""
    colours = {"I": IDC_RGB, "N": NORMAL_RGB, ".": GLASS_RGB}
    image = np.zeros((len(layout) * step, len(layout[0]) * step, 3), np.uint8)
    for r, line in enumerate(layout):
        for c, mark in enumerate(line):
            image[r * step:(r + 1) * step, c * step:(c + 1) * step] = colours[mark]
    return image


def write_patches(folder: Path, layout: list[str], origin: tuple[int, int], step: int = PATCH) -> dict[tuple[int, int], str]:
    """One patch file per I/N mark, named like the IDC dataset (`..._x<X>_y<Y>_class<k>.png`, X/Y the
    slide offset, `step` px apart from `origin`); {(column, row): file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for r, line in enumerate(layout):
        for c, mark in enumerate(line):
            if mark == ".":
                continue
            x, y = origin[0] + c * step, origin[1] + r * step
            name = f"9001_idx5_x{x}_y{y}_class{int(mark == 'I')}.png"
            write_image(folder / name, np.full((PATCH, PATCH, 3), IDC_RGB if mark == "I" else NORMAL_RGB, np.uint8))
            names[(c, r)] = name
    return names
