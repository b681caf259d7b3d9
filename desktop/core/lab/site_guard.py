"""Guard rails a lab director expects around site models, one function per rule, shared by the
quick method (`slidetally-cli adapt`, Tools → Adapt) and the deep one (`slidetally-train adapt`).

- A site model is written only to a new file: never over a shipped model, its base, another
  assay's file, and never under a key (file stem) that a model already has.
- It is not offered worse than its base on the grouped cross-validation unless an override
  names the loss; the override travels in the model's metadata.
- The approver is not one of the people who signed the cells it was fitted on.
- At load, a site model must name an installed base by SHA-256 and carry figures in range.
"""

from __future__ import annotations

import getpass
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from desktop.core.errors import ActionRefused, ModelError


class SiteModelRefused(ActionRefused):
    """A site model that must not be written or installed as asked; the message says why."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_destination(out: Path, model_files: list[Path], protected_folders: list[Path]) -> Path:
    """`out` must be a new .onnx file: not any known model (shipped, base, site), not in a shipped
    models folder, and its stem (the model's key) not taken by a known model."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise SiteModelRefused(f"{out.name}: a site model is an .onnx file")
    resolved = out.resolve()
    for folder in protected_folders:
        if folder.exists() and resolved.parent == Path(folder).resolve():
            raise SiteModelRefused(f"{out} is in the shipped models folder ({folder}); site models go to the user "
                                   "models folder or another folder of yours")
    for path in model_files:
        if resolved == Path(path).resolve() or _same_file(out, Path(path)):
            raise SiteModelRefused(f"{out} is the model {Path(path).stem}; a site model never replaces a model")
        if out.stem == Path(path).stem:
            raise SiteModelRefused(f"the key {out.stem!r} is taken by {path}; choose another file name")
    if out.exists():
        raise SiteModelRefused(f"{out} exists; a site model is written to a new file")
    return out


def check_approver(approved_by: str, signers: set[str] | frozenset[str], logins: Iterable[str] = (), *,
                   allow_same_login: bool = False) -> str:
    """The lab director who approves must not be one of the people who signed the cells used, by
    name or by computer login (unless the lab's setting allows the same login)."""
    name = approved_by.strip()
    if not name:
        raise SiteModelRefused("a site model must be approved by a named person (the lab director)")
    if name.casefold() in {s.strip().casefold() for s in signers if s}:
        raise SiteModelRefused(f"{name} signed cells this model was fitted on; another person must approve it")
    login = getpass.getuser()
    if login in set(logins) and not allow_same_login:
        raise SiteModelRefused(f"the computer login {login!r} signed or verified cells this model was fitted on; "
                               "the approver must work under their own login")
    return name


def loss_text(before: dict, after: dict) -> str | None:
    """'accuracy 81.0% → 78.2%' for each figure where the site model is worse; None if it is not."""
    lost = [f"{label} {before[key]:.1%} → {after[key]:.1%}" for key, label in
            (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")) if after[key] < before[key]]
    return "; ".join(lost) or None


def check_not_worse(before: dict, after: dict, override: str | None) -> str | None:
    """Refuse a site model worse than its base unless `override` is given; returns the audited
    override line ('<loss>; accepted because: <reason>') or None."""
    loss = loss_text(before, after)
    if loss is None:
        return None
    if not (override or "").strip():
        raise SiteModelRefused(f"the site model is worse than the base model on the grouped cross-validation ({loss}); "
                               "it is not installed unless you accept that loss with a reason")
    return f"{loss}; accepted because: {override.strip()}"


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
