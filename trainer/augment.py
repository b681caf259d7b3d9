"""Augmentation that fits microscopy, applied per batch in the tf.data pipeline.

Cells and tissue have no up or down (all 8 flips/rotations), and labs differ in stain,
lamp and magnification: stain jitter in haematoxylin-eosin-DAB optical density space
(Tellez et al. 2018), brightness/contrast/gamma, mild blur, and scale changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

# Ruifrok & Johnston stain vectors (as in skimage.color.rgb_from_hed).
_RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32
)
_RGB_FROM_HED[2] = np.cross(_RGB_FROM_HED[0], _RGB_FROM_HED[1])
_RGB_FROM_HED /= np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    hed_sigma: float = 0.05  # per-stain scale and shift, as Tellez's "HED-light"
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: float = 0.15
    saturation: float = 0.15
    blur_prob: float = 0.15
    scale_prob: float = 0.5
    scale_min: float = 0.75  # <1 zooms in (the object looks bigger, as at higher magnification)
    scale_max: float = 1.15

    def as_dict(self) -> dict:
        return asdict(self)


def _dihedral(x: tf.Tensor) -> tf.Tensor:
    n = tf.shape(x)[0]
    for flip in (lambda t: t[:, :, ::-1], lambda t: t[:, ::-1], lambda t: tf.transpose(t, [0, 2, 1, 3])):
        mask = tf.random.uniform([n, 1, 1, 1]) < 0.5
        x = tf.where(mask, flip(x), x)
    return x


def _rescale(x: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Random zoom in/out with a small shift; reflection fills the border on zoom-out."""
    n = tf.shape(x)[0]
    h, w = x.shape[1], x.shape[2]
    pad_h, pad_w = h // 4, w // 4
    padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
    ph, pw = h + 2 * pad_h, w + 2 * pad_w
    log_s = tf.random.uniform([n], np.log(cfg.scale_min), np.log(cfg.scale_max))
    apply = tf.random.uniform([n]) < cfg.scale_prob
    s = tf.where(apply, tf.exp(log_s), tf.ones([n]))
    shift = tf.random.uniform([n, 2], -0.06, 0.06)
    cy = 0.5 + shift[:, 0]
    cx = 0.5 + shift[:, 1]
    half_h = s * h / ph / 2
    half_w = s * w / pw / 2
    boxes = tf.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=1)
    return tf.image.crop_and_resize(padded, boxes, tf.range(n), [h, w], method="bilinear")


def _hed_jitter(x: tf.Tensor, sigma: float) -> tf.Tensor:
    n = tf.shape(x)[0]
    od = -tf.math.log(tf.clip_by_value(x, 1e-3, 1.0))
    hed = tf.einsum("nhwc,cd->nhwd", od, _HED_FROM_RGB)
    alpha = tf.random.uniform([n, 1, 1, 3], 1 - sigma, 1 + sigma)
    beta = tf.random.uniform([n, 1, 1, 3], -sigma, sigma)
    od = tf.einsum("nhwd,dc->nhwc", hed * alpha + beta, _RGB_FROM_HED)
    return tf.exp(-tf.maximum(od, 0.0))


def _photometric(x: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    n = tf.shape(x)[0]
    gamma = tf.exp(tf.random.uniform([n, 1, 1, 1], -cfg.gamma, cfg.gamma))
    x = tf.pow(tf.clip_by_value(x, 1e-4, 1.0), gamma)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([n, 1, 1, 1], 1 - cfg.contrast, 1 + cfg.contrast)
    x = (x - mean) * contrast + mean
    x = x + tf.random.uniform([n, 1, 1, 1], -cfg.brightness, cfg.brightness)
    grey = tf.reduce_mean(x, axis=3, keepdims=True)
    saturation = tf.random.uniform([n, 1, 1, 1], 1 - cfg.saturation, 1 + cfg.saturation)
    return grey + (x - grey) * saturation


def _blur(x: tf.Tensor, prob: float) -> tf.Tensor:
    kernel_1d = tf.constant([0.25, 0.5, 0.25])
    kernel = tf.tensordot(kernel_1d, kernel_1d, axes=0)[:, :, None, None]
    kernel = tf.tile(kernel, [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")
    mask = tf.random.uniform([tf.shape(x)[0], 1, 1, 1]) < prob
    return tf.where(mask, blurred, x)


def augment_batch(images: tf.Tensor, labels: tf.Tensor, cfg: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 batch in, float32 0..255 batch out (the models scale inside)."""
    x = tf.cast(images, tf.float32) / 255.0
    x = _dihedral(x)
    if cfg.scale_prob > 0:
        x = _rescale(x, cfg)
    if cfg.hed_sigma > 0:
        x = _hed_jitter(x, cfg.hed_sigma)
    x = _photometric(x, cfg)
    if cfg.blur_prob > 0:
        x = _blur(x, cfg.blur_prob)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0, labels


def stain_shift(images: np.ndarray, hed_scale=(1.0, 1.0, 1.0), hed_shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A fixed, deterministic stain shift (numpy) to test robustness: uint8 in, uint8 out."""
    x = np.clip(images.astype(np.float32) / 255.0, 1e-3, 1.0)
    hed = (-np.log(x)) @ _HED_FROM_RGB
    od = (hed * np.array(hed_scale, np.float32) + np.array(hed_shift, np.float32)) @ _RGB_FROM_HED
    return (np.exp(-np.maximum(od, 0)) * 255).round().clip(0, 255).astype(np.uint8)
