"""Export a trained Keras model to the ONNX model contract, and prove the export.

The exported graph takes uint8 RGB pixels, applies the temperature, and adds the
Unfamiliar score: a Mahalanobis distance of pooled features (two depths) to the nearest
class mean, with one covariance shared by all classes, fitted on the training split. It
also outputs `features`, the pooled features the classification head reads, so that the
app can verify and adapt the model to a lab's own cells without TensorFlow.

A model with an enabled white-balance layer is traced without it and gets it back from
`white_balance_graph.with_white_balance`: the same ops, under the node names the app looks for
to measure the background beside decoding (desktop/core/inference/front_end.py). Traced by
tf2onnx, the layer would compute the same under names the app cannot find: served whole, slower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from desktop.core.inference.contract import ModelMetadata, write_props
from trainer.architectures import WhiteBalance
from trainer.white_balance_graph import GraphLayoutError, with_white_balance

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ExportError(Exception):
    """The ONNX file does not reproduce the Keras model; nothing is written."""


OUTPUTS = {"probabilities", "ood_score", "features"}


def head_input(model: keras.Model) -> keras.KerasTensor:
    """The tensor the classification head (`logits`) reads: what `features` exports."""
    return model.get_layer("logits").input


def feature_model(model: keras.Model) -> keras.Model:
    """The model with more outputs: the features the Unfamiliar detector measures, and the head's input."""
    names = [layer.name for layer in model.layers]
    if "features" in names:
        features = model.get_layer("features").output
    else:
        pooled = [model.get_layer(n).output for n in names if n.startswith("gap")][-2:]
        features = keras.layers.Concatenate(name="features")(pooled) if len(pooled) > 1 else pooled[0]
    return keras.Model(model.inputs, [model.get_layer("logits").output, features, head_input(model)])


def model_outputs(model: keras.Model, images: np.ndarray, batch: int = 256,
                  graph: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, the Unfamiliar features and the head's input (the served `features`) of a uint8 array, in batches;
    graph=True runs them as one tf.function (3x eager's speed over many batches of one shape)."""
    extractor = feature_model(model)
    if graph:
        extractor = tf.function(extractor, reduce_retracing=True)
    parts: tuple[list, list, list] = ([], [], [])
    for start in range(0, len(images), batch):
        outputs = extractor(tf.cast(images[start:start + batch], tf.float32), training=False)
        for part, output in zip(parts, outputs):
            part.append(output.numpy())
    return tuple(np.concatenate(part) for part in parts)


@dataclass(frozen=True)
class Unfamiliar:
    """The Unfamiliar detector: class means and whitening fitted on train, threshold on val."""

    stats: dict[str, np.ndarray]  # centre, means, whiten (see fit_ood)
    threshold: float


def fit_ood(features: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Class means and a whitening matrix W (W W^T = inverse shared covariance)."""
    centre = features.mean(axis=0)
    features = features - centre
    means = np.stack([features[labels == k].mean(axis=0) for k in range(n_classes)])
    centred = features - means[labels]
    cov = centred.T @ centred / len(features)
    cov += np.eye(cov.shape[0]) * (1e-2 * np.trace(cov) / cov.shape[0])
    whiten = np.linalg.cholesky(np.linalg.inv(cov))
    # Centring first keeps the whitened values small, so float32 sums agree across runtimes.
    return {"centre": centre.astype(np.float32), "means": means.astype(np.float32), "whiten": whiten.astype(np.float32)}


def serving_function(model: keras.Model, temperature: float, ood: dict[str, np.ndarray], height: int,
                     width: int) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    extractor = feature_model(model)
    # numpy here, tf.constant inside: captured tensors would become extra graph inputs.
    centre_np, whiten_np = ood["centre"], ood["whiten"]
    whitened_means_np = ood["means"] @ ood["whiten"]
    dim = float(whiten_np.shape[0])

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="image")])
    def serve(image):
        logits, features, pooled = extractor(tf.cast(image, tf.float32), training=False)
        probabilities = tf.nn.softmax(logits / temperature, axis=-1)
        z = tf.matmul(features - tf.constant(centre_np), tf.constant(whiten_np))
        centred = z[:, None, :] - tf.constant(whitened_means_np)[None, :, :]
        distances = tf.reduce_sum(tf.square(centred), axis=-1) / dim
        return {"probabilities": probabilities, "ood_score": tf.reduce_min(distances, axis=-1),
                "features": tf.identity(pooled)}

    return serve


def white_balance_of(model: keras.Model) -> WhiteBalance | None:
    """The model's enabled white-balance layer, or None."""
    return next((layer for layer in model.layers if isinstance(layer, WhiteBalance) and layer.enabled), None)


@contextmanager
def _traced_without(layer: WhiteBalance | None) -> Iterator[None]:
    """The layer is the identity while tf2onnx traces (a layer reads `enabled` when traced)."""
    if layer is not None:
        layer.enabled = False
    try:
        yield
    finally:
        if layer is not None:
            layer.enabled = True


def to_onnx(model: keras.Model, temperature: float, ood: dict[str, np.ndarray], height: int, width: int,
            metadata: ModelMetadata) -> onnx.ModelProto:
    """The serving graph (`serving_function`'s) in ONNX, with the contract's metadata; a white-balance
    layer written by `with_white_balance` (see the module docstring)."""
    balance = white_balance_of(model)
    with _traced_without(balance):
        trunk = serving_function(model, temperature, ood, height, width)
        proto, _ = tf2onnx.convert.from_function(trunk, input_signature=trunk.input_signature, opset=OPSET)
    if balance is not None:
        try:
            proto = with_white_balance(proto, balance.reference, balance.quantile, height, width).model
        except GraphLayoutError as exc:
            raise ExportError(f"the white balance cannot be written into the graph: {exc}") from exc
    names = {o.name for o in proto.graph.output}
    if names != OUTPUTS:
        raise ExportError(f"unexpected output names {sorted(names)}")
    write_props(proto, metadata.to_props())
    proto.producer_name = "slidetally-trainer"
    onnx.checker.check_model(proto)
    return proto


def prove_parity(serve, proto: onnx.ModelProto, images: np.ndarray) -> dict:
    """Keras and ONNX Runtime must agree on every image: |dp| <= 1e-4 and the same top-1."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst_p, worst_ood, worst_f, same_top1 = 0.0, 0.0, 0.0, True
    for start in range(0, len(images), 128):
        batch = images[start:start + 128]
        expected = {k: v.numpy() for k, v in serve(tf.constant(batch)).items()}
        probs, ood, features = session.run(["probabilities", "ood_score", "features"], {"image": batch})
        worst_p = max(worst_p, float(np.abs(probs - expected["probabilities"]).max()))
        rel = np.abs(ood - expected["ood_score"]) / np.maximum(np.abs(expected["ood_score"]), 1.0)
        worst_ood = max(worst_ood, float(rel.max()))
        scale = np.maximum(np.abs(expected["features"]).max(), 1.0)
        worst_f = max(worst_f, float(np.abs(features - expected["features"]).max() / scale))
        same_top1 &= bool((probs.argmax(1) == expected["probabilities"].argmax(1)).all())
    result = {"n": int(len(images)), "max_abs_dprob": worst_p, "max_rel_dood": worst_ood,
              "max_rel_dfeatures": worst_f, "same_top1": same_top1}
    if worst_p > PARITY_TOLERANCE or not same_top1 or worst_ood > 1e-3 or worst_f > 1e-4:
        raise ExportError(f"ONNX does not match Keras: {result}")
    return result


def write_model(proto: onnx.ModelProto, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
