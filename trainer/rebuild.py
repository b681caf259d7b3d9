"""Rebuild a shipped contract model in Keras from its own ONNX initializers, and write
fine-tuned weights back into that same graph.

The shipped graphs hold the trained network with batch norm folded into the convolutions:
Conv (dense or depthwise, with or without bias), Relu, MaxPool, Add, GlobalAveragePool, and a
MatMul + Add head whose logits are divided by the temperature. Everything before the first
convolution is the front end (uint8 -> float, the 1/255 scale, the white balance where the
model has one); it has no trainable weights, so Keras gets the same front end (the trainer's
`WhiteBalance` layer) and is proved equal to the ONNX file on real images before anything is
trained. Writing back keeps every node of the served graph, so a site model runs exactly as
fast as its base and keeps its `features` output and Unfamiliar score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
from keras import layers
from onnx import numpy_helper

from desktop.core.inference import graph_names as wb
from trainer.architectures import WhiteBalance

PARITY_TOLERANCE = 1e-4


class RebuildError(Exception):
    """The ONNX graph holds an op or a layout this rebuild does not know; nothing is trained."""


@dataclass(frozen=True)
class WeightSlot:
    """One Keras weight and the ONNX initializer it came from (and goes back to)."""

    layer: str
    index: int  # position in layer.get_weights()
    initializer: str
    to_onnx: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class UnfamiliarSlots:
    """Initializers of the Unfamiliar score: centre [F], whitening [F, F], whitened class means [1, C, F]."""

    centre: str
    whiten: str
    whitened_means: str


@dataclass
class Rebuilt:
    model: keras.Model  # float pixels 0..255 in, logits out; layer `logits`, pooled features `gap*`
    slots: list[WeightSlot]
    temperature_slot: str  # initializer holding 1 / temperature
    unfamiliar: UnfamiliarSlots | None
    proto: onnx.ModelProto


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _front_end(graph: onnx.GraphProto, inits: dict[str, np.ndarray], inputs):
    """Keras ops for everything before the first convolution: white balance (if any), then the scale."""
    x = inputs
    if wb.REFERENCE in inits:
        cells = int(np.prod(inits[wb.CELLS_SHAPE][1:2]))
        quantile = 1.0 - float(inits[wb.K][0]) / cells
        x = WhiteBalance([float(v) for v in inits[wb.REFERENCE].ravel()], quantile=round(quantile, 4),
                         name="white_balance")(x)
    scale = [n for n in graph.node if n.op_type == "Mul" and wb.SCALE not in n.input and any("scale" in i for i in n.input)]
    offset = [n for n in graph.node if n.op_type == "Add" and any("scale" in i and i in inits for i in n.input)]
    if not scale:
        raise RebuildError("no input scaling found before the first convolution")
    factor = float(next(inits[i] for i in scale[0].input if i in inits))
    shift = float(next(inits[i] for i in offset[0].input if i in inits)) if offset else 0.0
    return layers.Rescaling(factor, shift, name="scale")(x)


def _ancestors(graph: onnx.GraphProto, target: str) -> set[str]:
    producer = {o: n for n in graph.node for o in n.output}
    seen, stack = set(), [target]
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        stack.extend(producer[name].input)
    return seen


def rebuild(proto: onnx.ModelProto) -> Rebuilt:
    """Keras model + the map back to the graph's initializers (see the module docstring)."""
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers = _consumers(graph)
    uses = {name: len(consumers.get(name, [])) for name in inits}
    head = _graph_head(graph, inits)
    needed = _ancestors(graph, head.features)
    first_conv = next(n for n in graph.node if n.op_type == "Conv")

    height, width = _input_size(proto)
    inputs = keras.Input((height, width, 3), name="pixels")
    trunk = _Trunk(inits, uses, {first_conv.input[0]: _front_end(graph, inits, inputs)})
    trunk.build(graph, needed)
    if head.features not in trunk.tensors:
        raise RebuildError("could not reach the head's input from the first convolution")
    logits, head_slots = _dense_head(head, inits, trunk.tensors[head.features])
    model = keras.Model(inputs, logits, name="rebuilt")
    return Rebuilt(model, trunk.slots + head_slots, head.temperature_slot,
                   _unfamiliar_slots(graph, inits, consumers, head.features), proto)


@dataclass(frozen=True)
class _GraphHead:
    """The graph's MatMul + Add head, the temperature's initializer, and the tensor the head reads."""

    temperature_slot: str
    bias_add: onnx.NodeProto
    matmul: onnx.NodeProto
    features: str


def _graph_head(graph: onnx.GraphProto, inits: dict[str, np.ndarray]) -> _GraphHead:
    """Walk back from `probabilities`: Softmax ← Mul by 1 / temperature ← Add (bias) ← MatMul (weights)."""
    softmax = next((n for n in graph.node if n.op_type == "Softmax" and "probabilities" in n.output), None)
    if softmax is None:
        raise RebuildError("no softmax producing 'probabilities'")
    producer = {o: n for n in graph.node for o in n.output}
    temp_mul = producer[softmax.input[0]]
    if temp_mul.op_type != "Mul":
        raise RebuildError("the logits are not scaled by a temperature before the softmax")
    temperature_slot = next(i for i in temp_mul.input if i in inits)
    bias_add = producer[next(i for i in temp_mul.input if i not in inits)]
    matmul = producer[next(i for i in bias_add.input if i not in inits)]
    if bias_add.op_type != "Add" or matmul.op_type != "MatMul":
        raise RebuildError("the head is not MatMul + Add")
    return _GraphHead(temperature_slot, bias_add, matmul, next(i for i in matmul.input if i not in inits))


class _Trunk:
    """The Keras layers of the trunk, node by node in the graph's order, one method per kind of op;
    each weight it sets is recorded as a slot to write back."""

    def __init__(self, inits: dict[str, np.ndarray], uses: dict[str, int], tensors: dict) -> None:
        self.inits, self.uses, self.tensors = inits, uses, tensors
        self.slots: list[WeightSlot] = []
        self._counter = {"conv": 0, "dw": 0, "add": 0, "pool": 0}
        self._layer_of = {"Conv": self._conv, "Relu": self._relu, "MaxPool": self._max_pool, "Add": self._add,
                          "GlobalAveragePool": self._global_average_pool, "Squeeze": self._same, "Identity": self._same}

    def _name(self, kind: str) -> str:
        self._counter[kind] += 1
        return f"{kind}{self._counter[kind]}"

    def build(self, graph: onnx.GraphProto, needed: set[str]) -> None:
        """Every node the head's input depends on, after the front end."""
        for node in graph.node:
            if not node.output or node.output[0] not in needed or node.output[0] in self.tensors:
                continue
            data = [i for i in node.input if i not in self.inits]
            if any(i not in self.tensors for i in data):
                continue  # the front end: already built as Keras layers
            layer = self._layer_of.get(node.op_type, self._unsupported)
            self.tensors[node.output[0]] = layer(node, data, self.tensors[data[0]], _attrs(node))

    def _conv(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        w_name = node.input[1]
        if self.uses.get(w_name, 0) != 1 or (len(node.input) > 2 and self.uses.get(node.input[2], 0) != 1):
            raise RebuildError(f"initializer of {node.name} is shared")
        w = self.inits[w_name]
        kh, kw = a.get("kernel_shape", w.shape[2:])
        top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
        if any((top, left, bottom, right)):
            x = layers.ZeroPadding2D(((top, bottom), (left, right)))(x)
        strides = tuple(a.get("strides", [1, 1]))
        has_bias = len(node.input) > 2
        bias = [self.inits[node.input[2]]] if has_bias else []
        group = a.get("group", 1)
        if group == 1:
            lname = self._name("conv")
            layer = layers.Conv2D(w.shape[0], (kh, kw), strides=strides, use_bias=has_bias, name=lname)
            x = layer(x)
            layer.set_weights([w.transpose(2, 3, 1, 0)] + bias)
            self.slots.append(WeightSlot(lname, 0, w_name, lambda k: k.transpose(3, 2, 0, 1)))
        elif group == w.shape[0] and w.shape[1] == 1:
            lname = self._name("dw")
            layer = layers.DepthwiseConv2D((kh, kw), strides=strides, use_bias=has_bias, name=lname)
            x = layer(x)
            layer.set_weights([w.transpose(2, 3, 0, 1)] + bias)
            self.slots.append(WeightSlot(lname, 0, w_name, lambda k: k.transpose(2, 3, 0, 1)))
        else:
            raise RebuildError(f"grouped convolution {node.name} (group {group}) is not supported")
        if has_bias:
            self.slots.append(WeightSlot(lname, 1, node.input[2], lambda b: b))
        return x

    def _relu(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        return layers.ReLU()(x)

    def _max_pool(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        if any(a.get("pads", [0])):
            raise RebuildError("padded max pooling is not supported")
        return layers.MaxPooling2D(tuple(a["kernel_shape"]), tuple(a["strides"]), name=self._name("pool"))(x)

    def _add(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        if len(data) != 2:
            return self._unsupported(node, data, x, a)
        return layers.Add(name=self._name("add"))([self.tensors[data[0]], self.tensors[data[1]]])

    def _global_average_pool(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        return layers.GlobalAveragePooling2D(name="gap")(x)

    def _same(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        return x

    def _unsupported(self, node: onnx.NodeProto, data: list[str], x, a: dict):
        raise RebuildError(f"op {node.op_type} ({node.name}) is not supported in the trunk")


def _dense_head(head: _GraphHead, inits: dict[str, np.ndarray], features) -> tuple[object, list[WeightSlot]]:
    """The head as a Dense layer `logits` with the graph's weights, and its two slots."""
    layer = layers.Dense(inits[head.matmul.input[1]].shape[1], name="logits")
    logits = layer(features)
    bias_name = next(i for i in head.bias_add.input if i in inits)
    layer.set_weights([inits[head.matmul.input[1]], inits[bias_name]])
    return logits, [WeightSlot("logits", 0, head.matmul.input[1], lambda k: k),
                    WeightSlot("logits", 1, bias_name, lambda b: b)]


def _input_size(proto: onnx.ModelProto) -> tuple[int, int]:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value), int(dims[2].dim_value)


def _unfamiliar_slots(graph, inits, consumers, features: str) -> UnfamiliarSlots | None:
    if "ood_score" not in {o.name for o in graph.output}:
        return None
    sub = next((n for n in consumers.get(features, []) if n.op_type == "Sub"), None)
    if sub is None:
        return None
    centre = next(i for i in sub.input if i in inits)
    matmul = next(n for n in consumers[sub.output[0]] if n.op_type == "MatMul")
    whiten = next(i for i in matmul.input if i in inits)
    means = next(n.input[1] for n in graph.node if n.op_type == "Sub" and n.input[1] in inits
                 and inits[n.input[1]].ndim == 3)
    return UnfamiliarSlots(centre, whiten, means)


def write_back(rebuilt: Rebuilt, temperature: float, unfamiliar: dict[str, np.ndarray] | None) -> onnx.ModelProto:
    """A copy of the base graph with the Keras weights, the new temperature and Unfamiliar statistics.
    `unfamiliar`: centre, whiten, means as `trainer.export.fit_ood` returns them."""
    proto = onnx.ModelProto()
    proto.CopyFrom(rebuilt.proto)
    values: dict[str, np.ndarray] = {}
    for slot in rebuilt.slots:
        weights = rebuilt.model.get_layer(slot.layer).get_weights()
        values[slot.initializer] = slot.to_onnx(weights[slot.index]).astype(np.float32)
    values[rebuilt.temperature_slot] = np.array(1.0 / temperature, np.float32)
    if unfamiliar is not None and rebuilt.unfamiliar is not None:
        s = rebuilt.unfamiliar
        values[s.centre] = unfamiliar["centre"].astype(np.float32)
        values[s.whiten] = unfamiliar["whiten"].astype(np.float32)
        values[s.whitened_means] = (unfamiliar["means"] @ unfamiliar["whiten"])[None].astype(np.float32)
    for init in proto.graph.initializer:
        if init.name in values:
            old = numpy_helper.to_array(init)
            new = values.pop(init.name)
            if old.shape != new.shape:
                raise RebuildError(f"{init.name}: shape {new.shape} does not fit the graph's {old.shape}")
            init.CopyFrom(numpy_helper.from_array(new, init.name))
    if values:
        raise RebuildError(f"initializers not found: {sorted(values)}")
    return proto


def onnx_outputs(proto: onnx.ModelProto, images: np.ndarray, batch: int = 128) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    parts = [session.run(names, {"image": images[i:i + batch]}) for i in range(0, len(images), batch)]
    return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}


def keras_logits(model: keras.Model, images: np.ndarray, batch: int = 128) -> np.ndarray:
    return np.concatenate([model(tf.cast(images[i:i + batch], tf.float32), training=False).numpy()
                           for i in range(0, len(images), batch)])


def prove_rebuild(rebuilt: Rebuilt, images: np.ndarray) -> float:
    """The rebuilt Keras model must give the ONNX file's probabilities (|dp| <= 1e-4, same top-1)."""
    reference = onnx_outputs(rebuilt.proto, images)["probabilities"]
    init = {i.name: numpy_helper.to_array(i) for i in rebuilt.proto.graph.initializer}
    inverse_t = float(init[rebuilt.temperature_slot])
    ours = tf.nn.softmax(keras_logits(rebuilt.model, images) * inverse_t).numpy()
    worst = float(np.abs(ours - reference).max())
    if worst > PARITY_TOLERANCE or not (ours.argmax(1) == reference.argmax(1)).all():
        raise RebuildError(f"the Keras rebuild does not reproduce the ONNX file (max |dp| {worst:.2e})")
    return worst
