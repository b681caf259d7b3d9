"""ONNX graph surgery for site adaptation: expose the pooled features a model's head reads,
read that head's weights, and write a new model with a site-fitted head and Unfamiliar
statistics on the same feature extractor (same contract, no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from desktop.core.inference.contract import write_props
from desktop.core.inference.head import (  # noqa: F401 - re-exported: lab's callers import them from here
    FEATURES,
    GraftError,
    Head,
    _constants,
    _producers,
    read_head,
    with_features_output,
)


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
    write_props(model, metadata)
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
