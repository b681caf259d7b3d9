"""Approve and install a site model made by `slidetally-train adapt` (a candidate: the model with
its cross-validated figures, not yet approved). Used by the trainer's CLI and by Tools → Adapt,
so both apply the same guard rails (`site_guard`) and write the same provenance."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import onnx

from desktop.core.atomic import write_atomically
from desktop.core.errors import ModelError
from desktop.core.inference.contract import ModelMetadata, SiteProvenance, read_props, write_props
from desktop.core.inference.registry import register
from desktop.core.lab.site_guard import SiteModelRefused, check_approver, check_destination, check_not_worse
from desktop.core.records.domain import now

MAX_CANDIDATE_BYTES = 200 * 1024 * 1024


def read_site(candidate: Path) -> tuple[onnx.ModelProto, ModelMetadata]:
    """The candidate's graph and its metadata, with its `site` provenance."""
    candidate = Path(candidate)
    if not candidate.is_file() or candidate.stat().st_size > MAX_CANDIDATE_BYTES:
        raise ModelError(f"{candidate} is not a site model file")
    try:
        proto = onnx.load(str(candidate))
        metadata = ModelMetadata.from_props(read_props(proto))
    except Exception as exc:  # any unreadable file is the same refusal to the technician
        raise ModelError(f"{candidate.name} is not a site model ({type(exc).__name__})") from exc
    if metadata.site is None:
        raise ModelError(f"{candidate.name} is not a site model (no 'site' in its metadata)")
    return proto, metadata


def install_site_model(candidate: Path, out: Path, approved_by: str, model_files: list[Path],
                       protected_folders: list[Path], override: str | None = None, *,
                       allow_same_login: bool = False) -> Path:
    """Check every rule, stamp the approval (and any override of a loss) into the metadata,
    write `out` atomically and return it. Nothing is written when a rule refuses."""
    proto, metadata = read_site(candidate)
    site: SiteProvenance = metadata.site
    name = check_approver(approved_by, set(site.signed_by), site.signed_logins, allow_same_login=allow_same_login)
    accepted = check_not_worse(site.before, site.after, override)
    out = check_destination(Path(out), model_files, protected_folders)
    site = site.approved(name, now(), accepted or "")
    write_props(proto, replace(metadata, site=site).to_props())
    data = proto.SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # appeared while we worked: never overwritten
        raise SiteModelRefused(f"{out} exists; a site model is written to a new file")
    write_atomically(out, data)  # whole or not at all, with the permissions the umask gives
    digest = hashlib.sha256(data).hexdigest()
    if hashlib.sha256(out.read_bytes()).hexdigest() != digest:
        raise ModelError(f"{out} was not written completely")
    register(out, digest, out.stem, name, site.approved_at)
    return out
