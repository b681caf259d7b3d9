"""ONNX graph surgery for site adaptation: expose the pooled features a model's head reads,
read that head's weights, and write a new model with a site-fitted head and Unfamiliar
statistics on the same feature extractor (same contract, no TensorFlow)."""

from __future__ import annotations

import json
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
    tensor = node.input[0]
    chain = []  # the constant Mul / Div / Add steps between the MatMul and the Softmax
    while True:
        node = producers.get(tensor)
        if node is None:
            raise GraftError("no MatMul head before the Softmax")
        if node.op_type in ("MatMul", "Gemm"):
            break
        if node.op_type not in ELEMENTWISE:
            raise GraftError(f"unexpected {node.op_type} between the head and the Softmax")
        const = [i for i in node.input if i in constants]
        var = [i for i in node.input if i not in constants]
        if len(var) != 1 or (node.op_type != "Identity" and len(const) != 1):
            raise GraftError(f"{node.op_type} between the head and the Softmax is not by a constant")
        chain.append((node.op_type, constants[const[0]] if const else None))
        tensor = var[0]
    if node.op_type == "Gemm":
        raise GraftError("Gemm heads are not supported yet")
    var = [i for i in node.input if i not in constants]
    const = [i for i in node.input if i in constants]
    if len(var) != 1 or len(const) != 1:
        raise GraftError("the head's MatMul must multiply the features by a constant matrix")
    weights = constants[const[0]].astype(np.float64)
    bias = np.zeros(weights.shape[1])
    for op, value in reversed(chain):  # from the MatMul outwards
        value = None if value is None else value.astype(np.float64)
        if op == "Add":
            bias = bias + value
        elif op == "Mul":
            weights, bias = weights * value, bias * value
        elif op == "Div":
            weights, bias = weights / value, bias / value
    return Head(var[0], weights, bias)


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


@dataclass(frozen=True)
class SiteHead:
    """What adaptation fitted: a new head and Unfamiliar statistics in feature space."""

    weights: np.ndarray  # [F, C], temperature folded in
    bias: np.ndarray  # [C]
    centroids: np.ndarray  # [K, F] site class means (K ≤ C)
    inverse_std: np.ndarray  # [F] per-feature scale of the distance


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers no output depends on (the old head and Unfamiliar score)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def graft_site_head(base: onnx.ModelProto, site: SiteHead, metadata: dict[str, str]) -> onnx.ModelProto:
    """A new contract model: the base feature extractor, the site head, a site Unfamiliar score."""
    base_head = read_head(base)
    n_features, n_classes = base_head.weights.shape
    if site.weights.shape != (n_features, n_classes):
        raise GraftError(f"site head is {site.weights.shape}, expected {(n_features, n_classes)}")
    model = onnx.ModelProto()
    model.CopyFrom(base)
    graph = model.graph
    del graph.output[:]
    old = [n for n in graph.node if {"probabilities", "ood_score"} & set(n.output)]
    for node in old:  # the old head's and Unfamiliar score's last nodes; the rest is pruned below
        graph.node.remove(node)
    f = base_head.features
    p = "slidetally_site_"
    consts = {
        f"{p}W": site.weights.astype(np.float32), f"{p}b": site.bias.astype(np.float32),
        f"{p}centroids": site.centroids.astype(np.float32), f"{p}inv_std": site.inverse_std.astype(np.float32),
        f"{p}axis1": np.array([1], np.int64), f"{p}axis2": np.array([2], np.int64),
        f"{p}inv_dim": np.array(1.0 / n_features, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    if FEATURES not in _producers(graph):
        graph.node.append(helper.make_node("Identity", [f], [FEATURES], name=f"{p}features"))
    graph.node.extend([
        helper.make_node("MatMul", [f, f"{p}W"], [f"{p}mm"], name=f"{p}matmul"),
        helper.make_node("Add", [f"{p}mm", f"{p}b"], [f"{p}logits"], name=f"{p}bias"),
        helper.make_node("Softmax", [f"{p}logits"], ["probabilities"], axis=-1, name=f"{p}softmax"),
        helper.make_node("Unsqueeze", [f, f"{p}axis1"], [f"{p}f3"], name=f"{p}unsqueeze"),
        helper.make_node("Sub", [f"{p}f3", f"{p}centroids"], [f"{p}diff"], name=f"{p}sub"),
        helper.make_node("Mul", [f"{p}diff", f"{p}inv_std"], [f"{p}z"], name=f"{p}scale"),
        helper.make_node("Mul", [f"{p}z", f"{p}z"], [f"{p}z2"], name=f"{p}square"),
        helper.make_node("ReduceSum", [f"{p}z2", f"{p}axis2"], [f"{p}dist"], keepdims=0, name=f"{p}sum"),
        helper.make_node("ReduceMin", [f"{p}dist"], [f"{p}nearest"], axes=[1], keepdims=0, name=f"{p}min"),
        helper.make_node("Mul", [f"{p}nearest", f"{p}inv_dim"], ["ood_score"], name=f"{p}per_feature"),
    ])
    graph.output.extend([
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes]),
        helper.make_tensor_value_info("ood_score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["N", n_features]),
    ])
    _prune(graph)
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    model.producer_name = "slidetally-adapt"
    onnx.checker.check_model(model)
    return model


def site_scores(features: np.ndarray, site: SiteHead) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference of the grafted graph: probabilities and Unfamiliar scores."""
    logits = features.astype(np.float64) @ site.weights + site.bias
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    z = (features[:, None, :] - site.centroids[None]) * site.inverse_std
    return e / e.sum(axis=1, keepdims=True), (z ** 2).sum(axis=2).min(axis=1) / features.shape[1]
