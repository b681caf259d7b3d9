"""The white-balance front end of a model, served split: each image's bright background is
measured beside decoding and fed to the graph, which then no longer measures it itself.

A blood model's first op scales each channel by reference / background, the background being
the 90th-percentile 4x4 block mean of the input (trainer.architectures.WhiteBalance). In the graph
that is a ReduceMean and a TopK on the model's thread, a tenth of the model's time; here it is
cv2 and numpy on the decoding threads. The result is bit-identical: a block's sum of 8-bit
values is an integer below 2^12, exact in float32 whatever the order of addition, and /16 is
exact too; the model file is untouched, and the split graph is checked against it at load.

Measured on the 200 full-resolution PBC samples: identical probabilities, Unfamiliar scores and
features (max |delta| 0), model alone ~1.1x. Folding the scale into the first convolution's
weights instead is not exact: it needs the graph's clip at 255 removed (|delta p| up to 0.03 on
the same samples), and per-image weights cannot share one batched convolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from desktop.core.inference import graph_names as wb

log = logging.getLogger(__name__)
FED = wb.BRIGHT  # the graph value the split graph takes as an input: [N, 3, 1] float32
# The nodes the split leaves out, by the names the trainer's export gives their outputs (FED last).
_MEASURING = (wb.CROP, wb.BLOCKS, wb.POOLED, wb.CELLS_LAST, wb.CELLS, wb.TOP, wb.KTH, FED)
_UNUSED = (wb.CROP_START, wb.CROP_END, wb.CROP_AXES, wb.BLOCKS_SHAPE, wb.CELLS_SHAPE, wb.K,
           wb.KTH_START, wb.KTH_END, wb.KTH_AXIS, wb.ONE)


BLOCK = 4  # the trainer's background cells are 4x4 pixels


@dataclass(frozen=True)
class Background:
    """How the graph measures the background: the `k`-th brightest 4x4 cell per channel."""

    k: int

    def measure(self, pixels: np.ndarray) -> np.ndarray:
        """[N, 3, 1] float32: per image and channel, the k-th largest 4x4 block mean (at least 1)."""
        n, height, width, _ = pixels.shape
        rows, cols = height // BLOCK, width // BLOCK
        # Block sums, exactly: 8-bit values times 16, averaged over 16 by INTER_AREA, give integers.
        tall = pixels[:, :rows * BLOCK, :cols * BLOCK].reshape(-1, cols * BLOCK, 3).astype(np.uint16)
        tall <<= 4
        sums = cv2.resize(tall, (cols, n * rows), interpolation=cv2.INTER_AREA)
        per_channel = np.ascontiguousarray(sums.reshape(n, rows * cols, 3).transpose(0, 2, 1))
        kth = np.partition(per_channel, rows * cols - self.k, axis=2)[:, :, rows * cols - self.k]
        return np.maximum(kth.astype(np.float32) / BLOCK**2, 1.0)[:, :, None]


def split(model_bytes: bytes) -> tuple[bytes, Background] | None:
    """The graph with its background measurement made an input, and how to measure it; None for a
    graph without this front end (or one laid out otherwise: it is then served whole)."""
    if FED.encode() not in model_bytes:  # names are plain bytes in the file: no onnx import (~40 MB) for others
        return None
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load_from_string(model_bytes)
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    produced = {o for n in graph.node for o in n.output}
    if not set(_MEASURING) - {wb.CROP} <= produced or wb.K not in inits or wb.BLOCKS_SHAPE not in inits:
        return None
    shape = numpy_helper.to_array(inits[wb.BLOCKS_SHAPE]).tolist()  # [-1, H/b, b, W/b, b, 3]
    k = int(numpy_helper.to_array(inits[wb.K]).ravel()[0])
    if len(shape) != 6 or shape[2] != BLOCK or shape[4] != BLOCK:
        return None
    kept = [n for n in graph.node if not set(n.output) & set(_MEASURING)]
    needed = {i for n in kept for i in n.input}
    if any(name in needed for name in _MEASURING[:-1]):
        return None  # something else reads the measurement's steps: serve the graph whole
    del graph.node[:]
    graph.node.extend(kept)
    unused = [i for i in graph.initializer if i.name in _UNUSED and i.name not in needed]
    for init in unused:
        graph.initializer.remove(init)
    graph.input.append(helper.make_tensor_value_info(FED, TensorProto.FLOAT, ["N", 3, 1]))
    return proto.SerializeToString(), Background(k)


def served_session(model_bytes: bytes, whole, options, outputs: list[str],
                   check: np.ndarray) -> tuple[object, Background | None, bytes]:
    """(session, Background, graph) of the split graph when it gives exactly the whole graph's
    outputs on `check` (uint8 images); (whole, None, b"") when there is no such front end or it differs."""
    import onnxruntime as ort

    made = split(model_bytes)
    if made is None:
        return whole, None, b""
    graph, background = made
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    expected = whole.run(outputs, {"image": check})
    got = session.run(outputs, {"image": check, FED: background.measure(check)})
    if not all(np.array_equal(a, b) for a, b in zip(expected, got)):
        log.warning("the split front end differs from the whole graph; the whole graph is served")
        return whole, None, b""
    return session, background, graph
