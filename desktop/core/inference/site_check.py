"""The load-time check of a site model's metadata: it names an installed base by SHA-256, was approved, and
its figures are in range. Run where models are discovered (inference); the rules that govern writing and
installing a site model are the lab's (`lab/site_guard.py`)."""

from __future__ import annotations

import json
import math

from desktop.core.errors import ModelError


def _number(value, name: str, lo: float, hi: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"site model metadata: {name} is not a number") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise ModelError(f"site model metadata: {name} {number} is out of range [{lo}, {hi}]")
    return number


def check_site_metadata(meta: dict[str, str], installed_base_sha256: set[str]) -> dict:
    """A site model is used only if it names an installed base and its figures are in range."""
    try:
        site = json.loads(meta["site"])
        metrics = json.loads(meta.get("metrics", "{}"))
    except (KeyError, ValueError, TypeError):
        raise ModelError("site model metadata: 'site' is not readable JSON") from None
    if not isinstance(site, dict) or not isinstance(metrics, dict):
        raise ModelError("site model metadata: 'site' and 'metrics' must be JSON objects")
    if not str(site.get("approved_by", "")).strip():
        raise ModelError("site model was never approved by a lab director; it is not used")
    base = str(site.get("base_sha256", ""))
    if base not in installed_base_sha256:
        raise ModelError(f"site model names base model {base[:12] or '(none)'}…, which is not installed; "
                         "it is not used")
    _number(meta.get("review_threshold"), "review_threshold", 0.3, 1.0)
    _number(meta.get("temperature"), "temperature", 0.05, 20.0)
    if "ood_threshold" in meta:
        _number(meta["ood_threshold"], "ood_threshold", 1e-6, 1e4)
    for key in ("accuracy", "balanced_accuracy"):
        if key in metrics:
            _number(metrics[key], f"metrics.{key}", 0.0, 1.0)
    for name in ("before", "after"):
        figures = site.get(name, {})
        for key in ("accuracy", "balanced_accuracy", "accepted_share"):
            if isinstance(figures, dict) and key in figures:
                _number(figures[key], f"site.{name}.{key}", 0.0, 1.0)
    return site


def check_site_info(info, installed_base_sha256: set[str]) -> dict:
    """`check_site_metadata` for a loaded model's `ModelInfo`."""
    meta = {"site": json.dumps(info.site), "review_threshold": str(info.review_threshold),
            "temperature": str(info.temperature), "metrics": json.dumps(info.metrics)}
    if info.ood_threshold is not None:
        meta["ood_threshold"] = str(info.ood_threshold)
    return check_site_metadata(meta, installed_base_sha256)
