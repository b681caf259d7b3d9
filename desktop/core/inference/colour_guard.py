"""The colour guard of a patch model: an image whose colour and texture are far from the training
patches' (a blood smear, another stain, blank glass) is Unfamiliar, whatever the network says.

The network's own Unfamiliar score (a distance in its features) does not see a blood cell resized to
50x50 as strange: it calls it tissue. Global colour statistics do: H&E tissue has its own. The guard is
declared in the model's metadata (`colour_guard`), fitted by the trainer on the training patches, and run
by the core on the same uint8 batch the model gets; its score is folded into the model's Unfamiliar score
in units of the model's own threshold, so every later step (the first-images check, Review) reads one
score."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

KIND = "colour-moments-mixture"
BLANK_SCORE = 1000.0  # an image with (almost) no tissue: this many times the threshold
SAMPLE_STEP = 2  # statistics from every second pixel of each row and column: the guard must keep up with inference
_OPTICAL_DENSITY = (-np.log(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)


class ColourGuardError(ValueError):
    """The metadata's `colour_guard` is not one this app can run."""


def _channels(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return images[..., 0], images[..., 1], images[..., 2]


def _saturation(images: np.ndarray) -> np.ndarray:
    """max - min over R, G, B (channel by channel: numpy's reduction over a last axis of 3 is 20x slower)."""
    r, g, b = _channels(images)
    return np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)


def tissue_share(images: np.ndarray, white_level: int = 220, min_saturation: int = 25) -> np.ndarray:
    """Per image [N, H, W, 3] uint8: the share of pixels that are tissue (not white glass)."""
    r, g, b = _channels(images)
    grey_sum = r.astype(np.uint16) + g + b  # grey < white_level, in sums of three
    tissue = (grey_sum < 3 * white_level) | (_saturation(images) > min_saturation)
    return tissue.mean(axis=(1, 2))


def _mean_and_spread(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and channel of [N, P, C] float32: the mean and the standard deviation, as weighted sums
    (numpy's mean over the middle axis is 10x slower). np.einsum, not a matrix product: its own loops give the same
    bits with any NumPy build, where `weights @ values` goes through whichever BLAS NumPy links (the wheel's
    OpenBLAS 0.3.31 and Debian's 0.3.21, which the installed bundle's NumPy links, round differently: 2 of the 517
    IDC samples' Unfamiliar scores differed in the 4th decimal). A few microseconds an image slower."""
    weights = np.full(values.shape[1], 1 / values.shape[1], np.float32)
    mean = np.einsum("p,npc->nc", weights, values)
    square = np.einsum("p,npc->nc", weights, values * values)
    return mean, np.sqrt(np.maximum(square - mean * mean, 0.0))


def colour_features(images: np.ndarray) -> np.ndarray:
    """[N, 15]: mean and spread of RGB and of optical density, edge strength, mean and spread of saturation,
    on every SAMPLE_STEP-th pixel of each row and column (a quarter of the work, the same statistics)."""
    images = images[:, ::SAMPLE_STEP, ::SAMPLE_STEP]
    n, h, w = images.shape[:3]
    x = images.reshape(n, h * w, 3).astype(np.float32) * np.float32(1 / 255)
    rgb_mean, rgb_spread = _mean_and_spread(x)
    od_mean, od_spread = _mean_and_spread(_OPTICAL_DENSITY[images.reshape(n, h * w, 3)])
    grey = (x[..., 0] + x[..., 1] + x[..., 2]).reshape(n, h, w) / 3
    edges = np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
    saturation = _saturation(images).reshape(n, h * w, 1).astype(np.float32) * np.float32(1 / 255)
    sat_mean, sat_spread = _mean_and_spread(saturation)
    return np.concatenate([rgb_mean, rgb_spread, od_mean, od_spread, edges[:, None], sat_mean, sat_spread], axis=1)


@dataclass(frozen=True)
class ColourGuard:
    """A Gaussian mixture over `colour_features` of the training patches: an image whose negative
    log-likelihood is above `threshold`, or with less than `min_tissue` of it tissue, is Unfamiliar.
    (One Gaussian missed a tenth of the blood samples: immature granulocytes fill the frame with a dark
    nucleus; a mixture of 8 flags all of them.)"""

    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    precision_cholesky: tuple[tuple[tuple[float, ...], ...], ...]  # per component, as scikit-learn's mixture keeps it
    threshold: float
    min_tissue: float = 0.02

    def negative_log_likelihood(self, images: np.ndarray) -> np.ndarray:
        x = colour_features(images).astype(np.float64)
        n_features = x.shape[1]
        log_probs = []
        for weight, mean, chol in zip(self.weights, self.means, self.precision_cholesky):
            chol = np.asarray(chol)
            y = (x - np.asarray(mean)) @ chol
            log_det = float(np.log(np.abs(np.diag(chol))).sum())
            log_probs.append(math.log(weight) + log_det - 0.5 * (n_features * math.log(2 * math.pi) + (y * y).sum(axis=1)))
        stacked = np.stack(log_probs, axis=1)
        top = stacked.max(axis=1)
        return -(top + np.log(np.exp(stacked - top[:, None]).sum(axis=1)))

    def score(self, images: np.ndarray) -> np.ndarray:
        """Per image: how many times less likely than the threshold's density (above 1: Unfamiliar);
        BLANK_SCORE for glass."""
        ratio = np.exp(np.minimum(self.negative_log_likelihood(images) - self.threshold, math.log(BLANK_SCORE)))
        glass = tissue_share(images[:, ::SAMPLE_STEP, ::SAMPLE_STEP]) < self.min_tissue
        return np.where(glass, BLANK_SCORE, ratio).astype(np.float32)

    def as_metadata(self) -> str:
        return json.dumps({"kind": KIND, "weights": [round(w, 8) for w in self.weights],
                           "means": [[round(v, 8) for v in m] for m in self.means],
                           "precision_cholesky": [[[round(v, 8) for v in row] for row in c]
                                                  for c in self.precision_cholesky],
                           "threshold": round(self.threshold, 6), "min_tissue": self.min_tissue})


def parse_colour_guard(value: str | None) -> ColourGuard | None:
    if value is None or value == "":
        return None
    try:
        spec = json.loads(value)
        weights = tuple(float(w) for w in spec["weights"])
        means = tuple(tuple(float(v) for v in m) for m in spec["means"])
        chol = tuple(tuple(tuple(float(v) for v in row) for row in c) for c in spec["precision_cholesky"])
        threshold, min_tissue = float(spec["threshold"]), float(spec.get("min_tissue", 0.02))
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ColourGuardError("colour_guard must give weights, means, precision_cholesky and threshold") from exc
    if spec.get("kind") != KIND:
        raise ColourGuardError(f"colour_guard kind {spec.get('kind')!r} is unknown to this app (it runs {KIND!r})")
    n = colour_features(np.zeros((1, 8, 8, 3), np.uint8)).shape[1]
    k = len(weights)
    if not 1 <= k <= 64 or len(means) != k or len(chol) != k or any(len(m) != n for m in means) \
            or any(len(c) != n or any(len(row) != n for row in c) for c in chol):
        raise ColourGuardError(f"colour_guard must have 1-64 components over {n} features")
    values = [*weights, *(v for m in means for v in m), *(v for c in chol for row in c for v in row), threshold]
    if not all(math.isfinite(v) for v in values) or min(weights) <= 0 or not 0 <= min_tissue < 1:
        raise ColourGuardError("colour_guard values must be finite, its weights above 0")
    return ColourGuard(weights, means, chol, threshold, min_tissue)
