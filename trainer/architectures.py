"""The CNNs: the reference ("seed") models, and ours.

Every model takes float pixels in 0..255 (scaling is the first layer, so it is inside the
exported graph) and ends in logits. The Unfamiliar detector reads the layer named
`features`, or, in ours, the globally pooled features of the last two stages (`gap*`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers


def seed_blood(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """The reference blood CNN, layer for layer (its softmax split off as logits + softmax)."""
    inputs = keras.Input(input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.RandomFlip("horizontal_and_vertical")(x)
    x = layers.RandomRotation(0.4)(x)
    for filters, kernel in ((8, 5), (16, 3), (32, 3)):
        x = layers.Conv2D(filters, kernel, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten(name="features")(x)
    logits = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="seed")


def seed_idc(input_shape: tuple[int, int, int], n_classes: int) -> keras.Model:
    """The reference IDC CNN: small conv stack with dropout (two-class softmax = binary CE)."""
    inputs = keras.Input(input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="features")(x)
    x = layers.Dropout(0.5)(x)
    logits = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="seed")


def background_rank(cells: int, quantile: float) -> int:
    """k: the background is the k-th brightest of `cells` 4x4 cells (the ONNX front end's TopK too)."""
    return max(1, round((1 - quantile) * cells))


def bright_background(x: tf.Tensor, quantile: float = 0.9) -> tf.Tensor:
    """Per image and channel, the bright background level [N, 3]: the `quantile` of a 4x4
    average (so single bright pixels do not count) of float pixels 0..255.

    The 4x4 average is a reshape and a mean, not a pooling op: in ONNX a pooling op needs
    the whole image transposed to channels-first, which cost a fifth of the model's speed."""
    height, width = x.shape[1] // 4, x.shape[2] // 4
    blocks = tf.reshape(x[:, :height * 4, :width * 4, :], [-1, height, 4, width, 4, 3])
    pooled = tf.reduce_mean(blocks, axis=[2, 4])
    per_channel = tf.transpose(tf.reshape(pooled, [-1, height * width, 3]), [0, 2, 1])
    k = background_rank(height * width, quantile)
    return tf.math.top_k(per_channel, k=k, sorted=True).values[:, :, -1]


@keras.saving.register_keras_serializable(package="slidetally")
class WhiteBalance(layers.Layer):
    """Scale each channel so that the image's bright background matches the training lab's:
    another lab's lamp, camera or stain tint (a yellow background) is divided out before the
    first convolution. Inside the graph, so the app's preprocessing stays one function; on the
    training lab's images it is nearly the identity.

    `enabled` False makes it the identity: a recipe that trains without it and serves with
    it (`white_balance="serving"`) switches it on after training, before anything is
    calibrated, measured or exported, so every figure is the served graph's."""

    def __init__(self, reference: list[float], quantile: float = 0.9, enabled: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reference = [float(v) for v in reference]
        self.quantile = quantile
        self.enabled = enabled

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if not self.enabled:
            return x
        scale = tf.constant(self.reference, tf.float32)[None, :] / tf.maximum(bright_background(x, self.quantile), 1.0)
        return tf.minimum(x * scale[:, None, None, :], 255.0)  # pixels and scale are >= 0: no lower clip

    def get_config(self) -> dict:
        return {**super().get_config(), "reference": self.reference, "quantile": self.quantile, "enabled": self.enabled}


def background_reference(images: np.ndarray, quantile: float = 0.9) -> list[float]:
    """The training images' mean bright background per channel (uint8 [N, H, W, 3] in)."""
    levels = [bright_background(tf.cast(images[i:i + 512], tf.float32), quantile) for i in range(0, len(images), 512)]
    return [round(float(v), 3) for v in tf.reduce_mean(tf.concat(levels, axis=0), axis=0).numpy()]


def _conv_bn(x, filters: int, stride: int = 1, name: str = ""):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _sep_bn(x, filters: int, name: str):
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _residual_stage(x, filters: int, name: str):
    """Downsample by 2, then a separable residual block: cheap on CPU, trains quickly."""
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = _sep_bn(x, filters, f"{name}_a")
    shortcut = x
    y = _sep_bn(x, filters, f"{name}_b")
    return layers.Add(name=f"{name}_add")([shortcut, y])


def slidenet(
    input_shape: tuple[int, int, int],
    n_classes: int,
    widths: tuple[int, ...] = (32, 64, 128, 192),
    dropout: float = 0.2,
    name: str = "slidenet",
    stem_stride: int = 2,
    white_balance: list[float] | None = None,
    white_balance_enabled: bool = True,
) -> keras.Model:
    """Ours: a plain stem, separable residual stages with batch norm, global pooling.

    `stem_stride` 2 halves large inputs at once (blood cells, 96 px); small tissue patches
    (50 px) keep full resolution in the stem (stride 1) so nuclear texture is not lost.
    `white_balance`: the training images' background level per channel, to normalise to."""
    inputs = keras.Input(input_shape, name="pixels")
    x = (WhiteBalance(white_balance, enabled=white_balance_enabled, name="white_balance")(inputs)
         if white_balance else inputs)
    x = layers.Rescaling(1.0 / 255, name="scale")(x)
    x = _conv_bn(x, widths[0], stride=stem_stride, name="stem")
    x = _sep_bn(x, widths[0], "stem2")
    pooled = []
    for i, width in enumerate(widths[1:]):
        x = _residual_stage(x, width, f"stage{i + 1}")
        pooled.append(layers.GlobalAveragePooling2D(name=f"gap{i + 1}")(x))
    x = layers.Dropout(dropout)(pooled[-1])
    logits = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


ARCHITECTURES = {"seed-blood": seed_blood, "seed-idc": seed_idc, "slidenet": slidenet}
