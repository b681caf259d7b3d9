"""The white-balance front end (architectures.WhiteBalance) written into an exported ONNX graph, under
the names the app looks for to serve it split (desktop/core/inference/graph_names.py, front_end.py).

The one builder: the trainer's export calls it on every model with the layer, and
scripts/add_white_balance.py called it to give blood v3 its front end from v2's weights. The ops
are the layer's (4x4 average as reshape + mean, the background by TopK, per-channel scale, clip at
255); the export proves the result against Keras before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from desktop.core.inference import graph_names as wb
from trainer.architectures import background_rank

BLOCK = 4  # the layer's background cells are 4x4 pixels


class GraphLayoutError(Exception):
    """The graph does not start the way the builder expects; nothing is inserted."""


@dataclass(frozen=True)
class Balanced:
    """The graph with the front end, and where it acts: `balanced` is the tensor the first convolution
    reads, the white-balanced pixels times the graph's own `scale` plus `offset`, channels-first."""

    model: onnx.ModelProto
    balanced: str
    scale: float
    offset: float


def _const(name: str, value, dtype) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def background_nodes(source: str, reference: list[float], quantile: float, height: int, width: int
                     ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and constants that compute, from float NHWC `source`, the per-image channel scale
    [N, 3, 1] = reference / bright background (graph_names.SCALE_COLUMN)."""
    rows, cols = height // BLOCK, width // BLOCK
    cells = rows * cols
    k = background_rank(cells, quantile)
    crop = bool(height % BLOCK or width % BLOCK)
    nodes, consts = [], []
    if crop:
        consts += [_const(wb.CROP_START, [0, 0], np.int64), _const(wb.CROP_END, [rows * BLOCK, cols * BLOCK], np.int64),
                   _const(wb.CROP_AXES, [1, 2], np.int64)]
        nodes.append(helper.make_node("Slice", [source, wb.CROP_START, wb.CROP_END, wb.CROP_AXES], [wb.CROP]))
    consts += [_const(wb.BLOCKS_SHAPE, [-1, rows, BLOCK, cols, BLOCK, 3], np.int64),
               _const(wb.CELLS_SHAPE, [-1, cells, 3], np.int64), _const(wb.K, [k], np.int64),
               _const(wb.KTH_START, [k - 1], np.int64), _const(wb.KTH_END, [k], np.int64),
               _const(wb.KTH_AXIS, [2], np.int64), _const(wb.ONE, 1.0, np.float32),
               _const(wb.REFERENCE, np.reshape(reference, (3, 1)), np.float32)]
    nodes += [
        helper.make_node("Reshape", [wb.CROP if crop else source, wb.BLOCKS_SHAPE], [wb.BLOCKS]),
        helper.make_node("ReduceMean", [wb.BLOCKS], [wb.POOLED], axes=[2, 4], keepdims=0),  # opset 17: attribute
        helper.make_node("Reshape", [wb.POOLED, wb.CELLS_SHAPE], [wb.CELLS_LAST]),
        helper.make_node("Transpose", [wb.CELLS_LAST], [wb.CELLS], perm=[0, 2, 1]),
        helper.make_node("TopK", [wb.CELLS, wb.K], [wb.TOP, wb.TOP_INDEX], axis=-1, largest=1, sorted=1),
        helper.make_node("Slice", [wb.TOP, wb.KTH_START, wb.KTH_END, wb.KTH_AXIS], [wb.KTH]),
        helper.make_node("Max", [wb.KTH, wb.ONE], [wb.BRIGHT]),
        helper.make_node("Div", [wb.REFERENCE, wb.BRIGHT], [wb.SCALE_COLUMN]),
    ]
    return nodes, consts


def _scalar(graph: onnx.GraphProto, name: str) -> float | None:
    found = [numpy_helper.to_array(i) for i in graph.initializer if i.name == name]
    return float(found[0]) if found and found[0].size == 1 else None


def _first_transpose(graph: onnx.GraphProto, source: str) -> tuple[onnx.NodeProto, float, float]:
    """The exported graph's own path from the cast pixels to the first convolution:
    Mul(scale) -> Add(offset) -> Transpose(NHWC -> NCHW). Returns the transpose and the
    scale and offset, so the front end can act on the channels-first tensor."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    first = lambda name: readers.get(name, [None])[0]  # the first node that reads `name`
    mul = first(source)
    add = first(mul.output[0]) if mul is not None else None
    transpose = first(add.output[0]) if add is not None else None
    perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None) if transpose is not None else None
    kinds = [node.op_type if node is not None else None for node in (mul, add, transpose)]
    if len(readers.get(source, [])) != 1 or kinds != ["Mul", "Add", "Transpose"] or perm != [0, 3, 1, 2]:
        raise GraphLayoutError("the graph does not start with Cast -> Mul -> Add -> Transpose(0,3,1,2)")
    scale, offset = _scalar(graph, mul.input[1]), _scalar(graph, add.input[1])
    if scale is None or offset is None:
        raise GraphLayoutError("the graph's input scale and offset are not constants")
    return transpose, scale, offset


def with_white_balance(model: onnx.ModelProto, reference: list[float], quantile: float, height: int, width: int
                       ) -> Balanced:
    """A copy of `model` with the front end: the background measured on the cast pixels (NHWC), the
    per-image scale applied after the graph's own transpose to channels-first, where ONNX Runtime
    broadcasts [N, 3, 1, 1] fast (in NHWC the same Mul cost as much as a convolution). The layer's clip
    at 255 becomes a clip at 255 * scale + offset there."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    cast = next((n for n in graph.node if n.op_type == "Cast" and list(n.input) == ["image"]), None)
    if cast is None:
        raise GraphLayoutError("the graph does not cast its 'image' input first")
    transpose, scale, offset = _first_transpose(graph, cast.output[0])
    nodes, consts = background_nodes(cast.output[0], reference, quantile, height, width)
    position = list(graph.node).index(cast) + 1
    for i, node in enumerate(nodes):
        graph.node.insert(position + i, node)
    balanced = transpose.output[0]
    transpose.output[0] = wb.UNBALANCED
    consts += [_const(wb.SCALE_SHAPE, [-1, 3, 1, 1], np.int64), _const(wb.CEILING, 255.0 * scale + offset, np.float32)]
    after = list(graph.node).index(transpose) + 1
    for i, node in enumerate([helper.make_node("Reshape", [wb.SCALE_COLUMN, wb.SCALE_SHAPE], [wb.SCALE]),
                              helper.make_node("Mul", [wb.UNBALANCED, wb.SCALE], [wb.SCALED]),
                              helper.make_node("Min", [wb.SCALED, wb.CEILING], [balanced])]):
        graph.node.insert(after + i, node)
    graph.initializer.extend(consts)
    onnx.checker.check_model(model)
    return Balanced(model, balanced, scale, offset)
