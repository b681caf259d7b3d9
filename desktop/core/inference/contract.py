"""The model contract (DESIGN.md, "The model contract (ONNX)"): what a SlideTally model file says about
itself in its `metadata_props` (string keys and values, JSON where structured), as dataclasses that
convert to and from those strings, and the facts the contract fixes, stated once.

Everyone who writes a model writes through here: the trainer's export, the quick site adaptation
(`lab/site_model.py`), the deep one (`trainer/adapt.py`) and its install (`lab/site_install.py`), so a
key means the same in every file. `model_info.py` checks and reads what the app serves from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from desktop.core.errors import ModelError

# --- the facts ---------------------------------------------------------------------------------------

SCHEMA = "slidetally/1"  # what this contract writes
SCHEMA_PREFIX = "slidetally/"  # what the app reads
BLOOD, IDC = "blood-differential", "idc-patch"  # the contract's tasks
TASKS = (BLOOD, IDC)
REQUIRED_KEYS = ("slidetally.schema", "task", "display_name", "version", "classes", "input_size")

# Class groups: what the summary counts a class as (blood: % of white cells, NRBC per 100 WBC, platelets).
WBC_GROUP, NRBC_GROUP, PLATELET_GROUP = "wbc", "nrbc", "platelet"
TISSUE_GROUP, TUMOUR_GROUP = "tissue", "tumour"
CLASS_TABLES: dict[str, dict[str, tuple[str, str]]] = {  # per task: class key -> (label, group), as trained
    BLOOD: {
        "basophil": ("Basophil", WBC_GROUP),
        "eosinophil": ("Eosinophil", WBC_GROUP),
        "erythroblast": ("Erythroblast (NRBC)", NRBC_GROUP),
        "ig": ("Immature granulocyte", WBC_GROUP),
        "lymphocyte": ("Lymphocyte", WBC_GROUP),
        "monocyte": ("Monocyte", WBC_GROUP),
        "neutrophil": ("Neutrophil", WBC_GROUP),
        "platelet": ("Platelet", PLATELET_GROUP),
    },
    IDC: {"normal": ("No IDC", TISSUE_GROUP), "idc": ("IDC", TUMOUR_GROUP)},
}

# The IDC data's description (shared/data/README.md): patches of slides scanned at 40x (0.25 µm per pixel)
# shown at 2.5x, i.e. 16 scan pixels a patch pixel. An IDC model records it as `mpp`; one exported before
# `mpp` was in the contract is read at it.
IDC_SCAN_MPP, IDC_SCAN_MAGNIFICATION, IDC_SHOWN_MAGNIFICATION = 0.25, 40.0, 2.5
IDC_MPP = IDC_SCAN_MPP * IDC_SCAN_MAGNIFICATION / IDC_SHOWN_MAGNIFICATION

QUICK, DEEP = "quick", "deep"  # site adaptation: a head on the base's features; every layer fine-tuned
ADAPTED_TO = " — adapted to "  # a site model's display name: "<base display name> — adapted to <site> #<n>"
SITE_ESTIMATE = "site cross-validated"  # what a site model's figures are, never "test"


class ContractError(ModelError):
    """A metadata value is not what the contract says (the message names the key)."""


@dataclass(frozen=True)
class ClassInfo:
    key: str
    label: str
    group: str
    hotkey: str

    @classmethod
    def from_dict(cls, entry: dict) -> ClassInfo:
        return cls(str(entry["key"]), str(entry.get("label", entry["key"])), str(entry.get("group", "")),
                   str(entry.get("hotkey", "")))


def classes_of(task: str, keys: list[str]) -> tuple[ClassInfo, ...]:
    """The contract's classes for a trained model: labels and groups from CLASS_TABLES, hotkeys 1, 2, ..."""
    table = CLASS_TABLES.get(task, {})
    return tuple(ClassInfo(k, *table.get(k, (k.title(), "other")), str(i + 1)) for i, k in enumerate(keys))


# --- site provenance ---------------------------------------------------------------------------------

_SIGNERS = ("signed_by", "signed_logins")


@dataclass(frozen=True)
class SiteProvenance:
    """A site model's metadata `site`: its base, the lab's cells and who signed them, the approval, and the
    cross-validated figures before and after (DESIGN, site models)."""

    name: str
    number: int
    method: str  # QUICK or DEEP
    cells_per_class: dict[str, int]
    source: dict  # the sessions or folder the cells came from (the signers are kept beside it)
    base_key: str = ""  # the base model's key (its file's stem); "" where an older file did not say
    base_display_name: str = ""
    base_version: str = ""
    base_sha256: str = ""
    signed_by: tuple[str, ...] = ()  # names that signed or verified those cells: none of them may approve
    signed_logins: tuple[str, ...] = ()
    cross_validation: str = ""  # how the folds were made, in words
    before: dict = field(default_factory=dict)  # the base model on the cells, with its own thresholds
    after: dict = field(default_factory=dict)  # out-of-fold: what the lab can expect
    notes: tuple[str, ...] = ()
    fitting: dict = field(default_factory=dict)  # the method's own settings (penalty, epochs, ...)
    approved_by: str = ""  # "" for a candidate not yet approved
    approved_at: str = ""
    override: str = ""  # the loss a director accepted, in words

    def __post_init__(self) -> None:
        # Signers passed inside `source` (as the app's session reader gives them) are moved beside it, so
        # every site model keeps them in one place.
        source = dict(self.source)
        for key in _SIGNERS:
            moved = source.pop(key, ())
            object.__setattr__(self, key, tuple(str(v) for v in (getattr(self, key) or moved)))
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "notes", tuple(self.notes))

    def to_dict(self) -> dict:
        return {"name": self.name, "number": self.number, "method": self.method, "base_model": self.base_key,
                "base_display_name": self.base_display_name, "base_version": self.base_version,
                "base_sha256": self.base_sha256, "cells_per_class": self.cells_per_class, "source": self.source,
                "signed_by": list(self.signed_by), "signed_logins": list(self.signed_logins),
                "cross_validation": self.cross_validation, "before": self.before, "after": self.after,
                "notes": list(self.notes), "fitting": self.fitting, "approved_by": self.approved_by,
                "approved_at": self.approved_at, "override": self.override}

    @classmethod
    def from_dict(cls, site: dict, display_name: str = "") -> SiteProvenance:
        """Read any site model SlideTally wrote, older forms too (see `_base_names`); `display_name` is
        the site model's own, which names its base in files that did not store the base's name."""
        base_key, base_name = _base_names(site, display_name)
        fitting = {k: v for k, v in site.items() if k not in _SITE_KEYS}  # older files kept them at the top
        return cls(
            name=str(site.get("name", "")), number=int(site.get("number", 0)), method=str(site.get("method", QUICK)),
            base_key=base_key, base_display_name=base_name, base_version=str(site.get("base_version", "")),
            base_sha256=str(site.get("base_sha256", "")), cells_per_class=dict(site.get("cells_per_class") or {}),
            source=dict(site.get("source") or {}), signed_by=tuple(site.get("signed_by") or ()),
            signed_logins=tuple(site.get("signed_logins") or ()),
            cross_validation=str(site.get("cross_validation", "")), before=dict(site.get("before") or {}),
            after=dict(site.get("after") or {}), notes=tuple(site.get("notes") or ()),
            fitting={**fitting, **(site.get("fitting") or {})}, approved_by=str(site.get("approved_by", "")),
            approved_at=str(site.get("approved_at", "")), override=str(site.get("override") or ""))

    def approved(self, by: str, at: str, override: str = "") -> SiteProvenance:
        """This provenance with a director's approval (and any loss they accepted) stamped in."""
        return replace(self, approved_by=by, approved_at=at, override=override)


_SITE_KEYS = frozenset(SiteProvenance("", 0, QUICK, {}, {}).to_dict())  # the keys `site` is written with


def _base_names(site: dict, display_name: str) -> tuple[str, str]:
    """(key, display name) of the base. `base_model` is the base's key; deep site models written before
    this module put the base's display name there (and wrote no `base_display_name`); quick ones wrote
    the key and left the name to the site model's own display name."""
    if "base_display_name" in site:
        return str(site.get("base_model", "")), str(site["base_display_name"])
    if site.get("method") == DEEP:
        return "", str(site.get("base_model", ""))
    name = display_name.split(ADAPTED_TO)[0] if ADAPTED_TO in display_name else ""
    return str(site.get("base_model", "")), name


# --- the model's metadata ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelMetadata:
    """A model file's metadata, typed. Optional keys are None when the file has none; keys whose values
    their own modules write and parse (slide_step, review_band, fraction_estimator, colour_guard) and
    keys this module does not know travel verbatim in `carried`."""

    task: str
    display_name: str
    version: str
    classes: tuple[ClassInfo, ...]
    input_size: tuple[int, int]  # [H, W]
    schema: str = SCHEMA
    resize: str | None = None
    small_input: str | None = None
    temperature: float | None = None
    review_threshold: float | None = None
    decision_threshold: float | None = None
    ood_threshold: float | None = None
    metrics: dict | None = None
    dataset: dict | None = None
    provenance: dict | None = None
    patch_size: int | None = None
    patch_stride: int | None = None
    mpp: float | None = None
    review_classes: tuple[str, ...] | None = None
    site: SiteProvenance | None = None
    carried: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelMetadata:
        """The metadata_props of a file (or a session's custom_metadata_map) as typed values."""
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise ContractError(f"metadata is missing {', '.join(missing)}")
        values = {name: _decode(name, key, props) for name, key in _FIELD_KEYS.items() if key in props}
        return cls(**values, carried={k: v for k, v in props.items() if k not in _WRITTEN})

    def to_props(self) -> dict[str, str]:
        """The strings a file carries: text as it is, everything else as JSON."""
        props = {key: _encode(name, value) for name, key in _FIELD_KEYS.items()
                 if (value := getattr(self, name)) is not None}
        return {**props, **{k: v for k, v in self.carried.items() if k not in props}}


# field -> metadata key, in the order a file lists them
_FIELD_KEYS = {"schema": "slidetally.schema", **{f.name: f.name for f in fields(ModelMetadata)
                                                  if f.name not in ("schema", "carried")}}
_WRITTEN = set(_FIELD_KEYS.values())
_TEXT = {"schema", "task", "display_name", "version", "resize", "small_input"}
_NUMBERS = {"temperature", "review_threshold", "decision_threshold", "ood_threshold", "mpp"}


def _decode(name: str, key: str, props: dict[str, str]) -> Any:
    raw = props[key]
    if name in _TEXT:
        return raw
    try:
        value = json.loads(raw) if name not in _NUMBERS else _number(raw)
        if name == "classes":
            return tuple(ClassInfo.from_dict(c) for c in value)
        if name == "site":
            return SiteProvenance.from_dict(value, props.get("display_name", ""))
        return tuple(value) if name in ("input_size", "review_classes") else value
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ContractError(f"metadata '{key}' is not what the model contract says ({exc})") from exc


def _number(raw: str) -> float | int:
    try:
        value = json.loads(raw)
    except ValueError:
        return float(raw)  # "nan", "inf": the app's reader refuses them, with the key's name
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{raw!r} is not a number")
    return value


def _encode(name: str, value: Any) -> str:
    if name in _TEXT:
        return str(value)
    if name == "classes":
        value = [{"key": c.key, "label": c.label, "group": c.group, "hotkey": c.hotkey} for c in value]
    elif name == "site":
        value = value.to_dict()
    return json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (json cannot write them itself)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be written into model metadata")


def read_props(proto: Any) -> dict[str, str]:
    """An onnx.ModelProto's metadata_props as a dict (onnx is not imported here: the app loads it lazily)."""
    return {p.key: p.value for p in proto.metadata_props}


def write_props(proto: Any, props: dict[str, str]) -> None:
    """Replace an onnx.ModelProto's metadata_props with `props`."""
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)


# --- a site model's metadata: one writer for both adaptations ----------------------------------------

@dataclass(frozen=True)
class SiteFit:
    """What a site adaptation fitted, and what made it."""

    temperature: float
    review_threshold: float
    ood_threshold: float | None
    review_classes: tuple[str, ...]  # too few verified cells: the site model's calls of these go to Review
    made_by: str  # the program that fitted it, with its version
    when: str  # local time with its offset, to the second
    software: dict = field(default_factory=dict)  # library versions it was fitted with
    parity: dict = field(default_factory=dict)  # the written graph against its reference


def site_display_name(site: SiteProvenance) -> str:
    return f"{site.base_display_name}{ADAPTED_TO}{site.name} #{site.number}" + (" (whole network)" if site.method == DEEP
                                                                                 else "")


def site_model_metadata(base: ModelMetadata, base_key: str, base_sha256: str, site: SiteProvenance,
                        fit: SiteFit) -> ModelMetadata:
    """The one writer of a site model's contract (quick or deep, DESIGN "Site models"): the base's metadata
    with the fitted thresholds, the out-of-fold figures as its metrics, and `site` and `provenance`. The
    base is named from its own metadata; a named approver approved it when it was written."""
    site = replace(site, base_key=base_key, base_display_name=base.display_name, base_version=base.version,
                   base_sha256=base_sha256, approved_at=site.approved_at or (fit.when if site.approved_by else ""))
    after = site.after
    metrics = {"accuracy": after.get("accuracy"), "balanced_accuracy": after.get("balanced_accuracy"),
               "n": after.get("n"), "cross_validated": True, "estimate": SITE_ESTIMATE}
    if after.get("accuracy_interval"):
        metrics["accuracy_interval"] = after["accuracy_interval"]
    ood = None if fit.ood_threshold is None else float(f"{fit.ood_threshold:.6g}")
    return replace(base, version=f"{base.version}+site.{site.name}.{site.number}", display_name=site_display_name(site),
                   temperature=round(float(fit.temperature), 4), review_threshold=round(float(fit.review_threshold), 2),
                   ood_threshold=ood, decision_threshold=0.5, review_classes=tuple(fit.review_classes),
                   metrics=metrics, site=site,
                   provenance={"date": fit.when, "made_by": fit.made_by, "base_sha256": site.base_sha256,
                               "software": fit.software, "parity": fit.parity})
