"""Write an adapted (site) model: the base model's graph with the site head grafted on, the
contract's metadata with its provenance, checked against the numpy reference before it is
installed. A site model never replaces the shipped model; it is an assay of its own."""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from desktop import __version__
from desktop.core.atomic import write_atomically
from desktop.core.errors import ActionRefused
from desktop.core.inference.contract import (
    QUICK,
    ModelMetadata,
    SiteFit,
    SiteProvenance,
    site_model_metadata,
    write_props,
)
from desktop.core.inference.imaging import UnreadableImage, load_prepared
from desktop.core.inference.model import Model, ModelError, find_model_files
from desktop.core.inference.registry import register
from desktop.core.lab.adaptation import Adaptation, adapt
from desktop.core.lab.graft import graft_site_head, read_head, site_scores, with_features_output
from desktop.core.lab.site_cells import VerifiedCell, extract
from desktop.core.records.domain import now

PARITY = 1e-5


def slug(name: str) -> str:
    text = re.sub(r"[^A-Za-z0-9]+", "-", name.strip()).strip("-").lower()
    if not text:
        raise ActionRefused("Give the site a name (letters or digits), e.g. the lab's short name.")
    return text[:40]


def next_number(folder: Path, base_key: str, site: str) -> int:
    taken = [int(m.group(1)) for p in Path(folder).glob(f"{base_key}-site-{site}-*.onnx")
             if (m := re.search(r"-(\d+)\.onnx$", p.name))]
    return max(taken, default=0) + 1


def site_metadata(base: Model, adaptation: Adaptation, site: str, number: int, approved_by: str, source: dict,
                  override: str = "", parity: dict | None = None) -> dict[str, str]:
    """The site model's metadata, written by the contract's one site writer (the deep adaptation uses it too).
    `source` may carry the signers (`who_signed`); `parity`: the grafted graph against its numpy reference."""
    provenance = SiteProvenance(
        name=site, number=number, method=QUICK, cells_per_class=adaptation.cells_per_class, source=source,
        cross_validation=adaptation.folds, before=adaptation.before.as_dict(), after=adaptation.after.as_dict(),
        notes=tuple(adaptation.notes), approved_by=approved_by, override=override,
        fitting={"penalty_strength": adaptation.strength, "kept_from_base": list(adaptation.kept_from_base)})
    fit = SiteFit(adaptation.temperature, adaptation.review_threshold, adaptation.ood_threshold,
                  tuple(adaptation.kept_from_base), made_by=f"slidetally {__version__} adapt", when=now(),
                  software={"slidetally": __version__}, parity=parity or {})
    base_metadata = ModelMetadata.from_props(dict(base.session.get_modelmeta().custom_metadata_map))
    return site_model_metadata(base_metadata, base.info.key, base.info.sha256, provenance, fit).to_props()


def build_site_model(base: Model, adaptation: Adaptation, metadata: dict[str, str]) -> onnx.ModelProto:
    proto = with_features_output(onnx.load(str(base.info.path)))
    return graft_site_head(proto, adaptation.site, metadata)


def prove_graft(proto: onnx.ModelProto, adaptation: Adaptation, images: np.ndarray) -> float:
    """The grafted graph must match the numpy reference on real images: max |Δp| ≤ 1e-5."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    probs, ood, features = session.run(["probabilities", "ood_score", "features"], {"image": images})
    ref_p, ref_ood = site_scores(features.astype(np.float64), adaptation.site)
    worst = float(np.abs(probs - ref_p).max())
    worst_ood = float((np.abs(ood - ref_ood) / np.maximum(np.abs(ref_ood), 1.0)).max())
    if worst > PARITY or worst_ood > 1e-4:
        raise ModelError(f"the adapted model does not match its numpy reference (|Δp| {worst:.2e}, "
                         f"|Δood| {worst_ood:.2e}); nothing was written")
    return worst


@dataclass(frozen=True)
class PreparedAdaptation:
    """An adaptation fitted and cross-validated, not yet approved or written."""

    adaptation: Adaptation
    problems: list[str]  # cells that could not be used, one line each
    check_images: np.ndarray  # a few of the site's images, to prove the grafted graph
    source: dict


def prepare_adaptation(base: Model, cells: list[VerifiedCell], source: dict, progress=None,
                       cancel: threading.Event | None = None) -> PreparedAdaptation:
    """Features of the verified cells from the base model, then the cross-validated fit."""
    info = base.info
    site, problems = extract(base, cells, progress=(lambda done, total: progress("features", done, total))
                             if progress else None, cancel=cancel)
    adaptation = adapt(site, read_head(onnx.load(str(info.path))), info.class_keys, info.review_threshold,
                       info.ood_threshold, info.decision_threshold,
                       progress=(lambda done, total: progress("fit", done, total)) if progress else None)
    images = []
    for cell in cells:
        try:
            images.append(load_prepared(cell.path, info.input))
        except (UnreadableImage, OSError):
            continue
        if len(images) == 32:
            break
    return PreparedAdaptation(adaptation, problems, np.stack(images), source)


def write_site_model(base: Model, prepared: PreparedAdaptation, site_name: str, approved_by: str,
                     destination: Path, override: str | None = None, model_files: list[Path] | None = None,
                     protected_folders: list[Path] | None = None, allow_same_login: bool = False) -> Path:
    """Graft, prove, write atomically (into a folder, e.g. the user models folder, or to a new .onnx path)
    and validate the file as any model is validated at load. The guard rails of `site_guard` apply:
    a new file under a free key, an approver who signed none of the cells, a loss only with `override`."""
    from desktop.core.lab.site_guard import check_approver, check_destination, check_not_worse
    from desktop.core.resources import resource

    adaptation = prepared.adaptation
    approver = check_approver(approved_by, set(prepared.source.get("signed_by", [])),
                              prepared.source.get("signed_logins", []), allow_same_login=allow_same_login)
    accepted = check_not_worse(adaptation.before.as_dict(), adaptation.after.as_dict(), override)
    site = slug(site_name)
    destination = Path(destination)
    folder = destination.parent if destination.suffix == ".onnx" else destination
    number = next_number(folder, base.info.key, site)
    path = destination if destination.suffix == ".onnx" else folder / f"{base.info.key}-site-{site}-{number}.onnx"
    shipped = resource("models")
    protected = [shipped] if protected_folders is None else protected_folders
    known = find_model_files(*protected, folder) if model_files is None else model_files
    check_destination(path, [*known, base.info.path], protected)
    folder.mkdir(parents=True, exist_ok=True)
    proto = build_site_model(base, adaptation, {})  # its metadata once the graft is proved, with the proof
    worst = prove_graft(proto, adaptation, prepared.check_images)
    metadata = site_metadata(base, adaptation, site, number, approver, prepared.source, override=accepted or "",
                             parity={"n": len(prepared.check_images), "max_abs_dprob": worst})
    write_props(proto, metadata)
    data = proto.SerializeToString()
    write_atomically(path, data)
    model = Model(path)  # the contract check every model gets at load
    if model.info.sha256 != hashlib.sha256(data).hexdigest():
        raise ModelError(f"{path.name} changed while it was written; write the site model again.")
    register(path, model.info.sha256, model.info.key, approver, model.info.site_provenance.approved_at)
    return path
