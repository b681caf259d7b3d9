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
import os
from collections.abc import Iterable
from pathlib import Path

from desktop.core.errors import ActionRefused
from desktop.core.inference.site_check import check_site_info, check_site_metadata  # noqa: F401 - re-exported


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
