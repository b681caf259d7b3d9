"""The model's classification head in its ONNX graph: found by walking back from `probabilities`, and
exposed as a `features` output (the pooled features the head reads). Inference needs this to serve a model
exported before `features` was in the contract; site adaptation grafts a new head on it (`lab/graft.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = "features"
ELEMENTWISE = {"Mul", "Div", "Add", "Identity"}


class GraftError(Exception):
    """The model's graph does not have the shape site adaptation needs."""


@dataclass(frozen=True)
class Head:
    """softmax(features @ weights + bias) reproduces the model's probabilities (temperature folded in)."""

    features: str  # name of the tensor the head reads
    weights: np.ndarray  # [F, C]
    bias: np.ndarray  # [C]


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def read_head(model: onnx.ModelProto) -> Head:
    """Walk back from `probabilities` (Softmax ← Mul/Div/Add by constants ← MatMul) to the head."""
    graph = model.graph
    producers, constants = _producers(graph), _constants(graph)
    node = producers.get("probabilities")
    if node is None or node.op_type != "Softmax":
        raise GraftError("the model's 'probabilities' is not a Softmax: cannot find its head")
    node, chain = _walk_to_matmul(producers, constants, node.input[0])
    if node.op_type == "Gemm":
        raise GraftError("Gemm heads are not supported yet")
    var = [i for i in node.input if i not in constants]
    const = [i for i in node.input if i in constants]
    if len(var) != 1 or len(const) != 1:
        raise GraftError("the head's MatMul must multiply the features by a constant matrix")
    weights, bias = _fold_chain(constants[const[0]].astype(np.float64), chain)
    return Head(var[0], weights, bias)


def _walk_to_matmul(producers: dict[str, onnx.NodeProto], constants: dict[str, np.ndarray],
                    tensor: str) -> tuple[onnx.NodeProto, list[tuple[str, np.ndarray | None]]]:
    """From the Softmax's input back to the MatMul (or Gemm), with the constant Mul / Div / Add steps between."""
    chain = []
    while True:
        node = producers.get(tensor)
        if node is None:
            raise GraftError("no MatMul head before the Softmax")
        if node.op_type in ("MatMul", "Gemm"):
            return node, chain
        if node.op_type not in ELEMENTWISE:
            raise GraftError(f"unexpected {node.op_type} between the head and the Softmax")
        const = [i for i in node.input if i in constants]
        var = [i for i in node.input if i not in constants]
        if len(var) != 1 or (node.op_type != "Identity" and len(const) != 1):
            raise GraftError(f"{node.op_type} between the head and the Softmax is not by a constant")
        chain.append((node.op_type, constants[const[0]] if const else None))
        tensor = var[0]


def _fold_chain(weights: np.ndarray, chain: list[tuple[str, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """The MatMul's weights with the constant steps folded in, from the MatMul outwards: (weights, bias)."""
    bias = np.zeros(weights.shape[1])
    for op, value in reversed(chain):
        value = None if value is None else value.astype(np.float64)
        if op == "Add":
            bias = bias + value
        elif op == "Mul":
            weights, bias = weights * value, bias * value
        elif op == "Div":
            weights, bias = weights / value, bias / value
    return weights, bias


def with_features_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with a `features` output: the pooled features its head reads."""
    if any(o.name == FEATURES for o in model.graph.output):
        return model
    head = read_head(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.append(helper.make_node("Identity", [head.features], [FEATURES], name="slidetally_features"))
    out.graph.output.append(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["N", int(head.weights.shape[0])]))
    onnx.checker.check_model(out)
    return out
