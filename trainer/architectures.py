"""The CNNs: the reference ("seed") models, and ours.

Every model takes float pixels in 0..255 (scaling is the first layer, so it is inside the
exported graph) and ends in logits. The Unfamiliar detector reads the layer named
`features`, or, in ours, the globally pooled features of the last two stages (`gap*`).
"""

from __future__ import annotations

import keras
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
) -> keras.Model:
    """Ours: a plain stem, separable residual stages with batch norm, global pooling.

    `stem_stride` 2 halves large inputs at once (blood cells, 96 px); small tissue patches
    (50 px) keep full resolution in the stem (stride 1) so nuclear texture is not lost."""
    inputs = keras.Input(input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
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
