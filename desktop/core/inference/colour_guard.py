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

KIND = "colour-moments-mahalanobis"
BLANK_SCORE = 1000.0  # an image with (almost) no tissue: this many times the threshold
_OPTICAL_DENSITY = (-np.log(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)


class ColourGuardError(ValueError):
    """The metadata's `colour_guard` is not one this app can run."""


def tissue_share(images: np.ndarray, white_level: int = 220, min_saturation: int = 25) -> np.ndarray:
    """Per image [N, H, W, 3] uint8: the share of pixels that are tissue (not white glass)."""
    grey = images.mean(axis=3)
    saturation = images.max(axis=3).astype(np.int16) - images.min(axis=3)
    return ((grey < white_level) | (saturation > min_saturation)).mean(axis=(1, 2))


def colour_features(images: np.ndarray) -> np.ndarray:
    """[N, 15]: mean and spread of RGB and of optical density, edge strength, mean and spread of saturation."""
    x = images.astype(np.float32) / 255.0
    od = _OPTICAL_DENSITY[images]
    grey = x.mean(axis=3)
    edges = np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2)) + np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
    saturation = x.max(axis=3) - x.min(axis=3)
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), od.mean(axis=(1, 2)), od.std(axis=(1, 2)),
                           edges[:, None], saturation.mean(axis=(1, 2))[:, None], saturation.std(axis=(1, 2))[:, None]],
                          axis=1)


@dataclass(frozen=True)
class ColourGuard:
    """Mahalanobis distance of `colour_features` to the training patches' mean; above `threshold`, or
    with less than `min_tissue` of the image tissue, the image is Unfamiliar."""

    mean: tuple[float, ...]
    inverse_covariance: tuple[tuple[float, ...], ...]
    threshold: float
    min_tissue: float = 0.02

    @classmethod
    def fit(cls, train_images: np.ndarray, percentile: float = 99.0, min_tissue: float = 0.02) -> ColourGuard:
        """The guard of the training patches: its threshold the `percentile` of their own distances."""
        features = colour_features(train_images).astype(np.float64)
        mean = features.mean(axis=0)
        covariance = np.cov(features.T) + 1e-6 * np.eye(features.shape[1])
        inverse = np.linalg.inv(covariance)
        z = features - mean
        distances = np.sqrt(np.einsum("ij,jk,ik->i", z, inverse, z))
        return cls(tuple(mean.tolist()), tuple(map(tuple, inverse.tolist())), float(np.percentile(distances, percentile)),
                   min_tissue)

    def distance(self, images: np.ndarray) -> np.ndarray:
        z = colour_features(images) - np.asarray(self.mean, np.float32)
        inverse = np.asarray(self.inverse_covariance, np.float32)
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, inverse, z), 0.0))

    def score(self, images: np.ndarray) -> np.ndarray:
        """Per image: the distance in units of the threshold (above 1: Unfamiliar); BLANK_SCORE for glass."""
        ratio = self.distance(images) / self.threshold
        return np.where(tissue_share(images) < self.min_tissue, BLANK_SCORE, ratio).astype(np.float32)

    def fold(self, images: np.ndarray, ood: np.ndarray, ood_threshold: float) -> np.ndarray:
        """The model's Unfamiliar score, raised to the guard's where the guard finds the image stranger."""
        return np.maximum(np.asarray(ood, np.float32), ood_threshold * self.score(images))

    def as_metadata(self) -> str:
        return json.dumps({"kind": KIND, "mean": [round(v, 6) for v in self.mean],
                           "inverse_covariance": [[round(v, 6) for v in row] for row in self.inverse_covariance],
                           "threshold": round(self.threshold, 4), "min_tissue": self.min_tissue})


def parse_colour_guard(value: str | None) -> ColourGuard | None:
    if value is None or value == "":
        return None
    try:
        spec = json.loads(value)
        mean = tuple(float(v) for v in spec["mean"])
        inverse = tuple(tuple(float(v) for v in row) for row in spec["inverse_covariance"])
        threshold, min_tissue = float(spec["threshold"]), float(spec.get("min_tissue", 0.02))
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ColourGuardError("colour_guard must give mean, inverse_covariance and threshold") from exc
    if spec.get("kind") != KIND:
        raise ColourGuardError(f"colour_guard kind {spec.get('kind')!r} is unknown to this app (it runs {KIND!r})")
    n = colour_features(np.zeros((1, 2, 2, 3), np.uint8)).shape[1]
    values = [*mean, *(v for row in inverse for v in row), threshold, min_tissue]
    if len(mean) != n or len(inverse) != n or any(len(row) != n for row in inverse):
        raise ColourGuardError(f"colour_guard must have {n} features")
    if not all(math.isfinite(v) for v in values) or threshold <= 0 or not 0 <= min_tissue < 1:
        raise ColourGuardError("colour_guard values must be finite, its threshold above 0")
    return ColourGuard(mean, inverse, threshold, min_tissue)
