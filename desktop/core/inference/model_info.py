"""What a model's metadata says, checked against the SlideTally contract: its task, classes,
input, thresholds, patch grid, slide step and scale. A damaged or foreign value raises
`ModelError` naming the file and the key.

Patch models (task `idc-patch`) may declare where their patches lie on a slide, as optional
metadata (integers, in slide pixels): `patch_size`, the side of the square cut from a large
tissue image (default: the input width), and `patch_stride`, the distance between neighbouring
patches, i.e. the spacing of the tiles the app cuts and of the x/y in patch file names
(default: `patch_size`). Heat map, mosaic, gallery crops and tiling all read them from here.
Patch models may declare `mpp`, the physical size of an input pixel in µm: whole-slide images are read
at that scale (`desktop/core/inference/wsi.py`). An IDC model exported before `mpp` was in the contract
is read at `contract.IDC_MPP`, the scale its data were cut at (40x scans shown at 2.5x: 0.25 µm · 16).
A two-class patch model may also declare `slide_step` (JSON, see `desktop/core/inference/slide_step.py`):
a step over all the patches of a slide that the core runs before the decision rule.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from desktop.core.errors import ModelError
from desktop.core.inference.colour_guard import ColourGuard, ColourGuardError, parse_colour_guard
from desktop.core.inference.contract import (
    BLOOD,
    IDC,
    IDC_MPP,
    REQUIRED_KEYS,
    SCHEMA_PREFIX,
    TASKS,
    ClassInfo,
    SiteProvenance,
)
from desktop.core.inference.imaging import INTERPOLATIONS, SMALL_INPUT_RULES, InputSpec
from desktop.core.inference.quantification import (
    FractionEstimator,
    QuantificationError,
    ReviewBand,
    parse_estimator,
    parse_review_band,
)
from desktop.core.inference.slide import PatchGrid
from desktop.core.inference.slide_step import SlideStep, SlideStepError, parse_slide_step

__all__ = ["BLOOD", "IDC", "MPP_RANGE", "TASKS", "ClassInfo", "ModelError", "ModelInfo", "parse_metadata"]
MPP_RANGE = (0.01, 1000.0)  # a plausible µm per pixel: a model's, a slide's own, or one a technician gives


@dataclass(frozen=True)
class ModelInfo:
    """Everything the app reads from a model's metadata."""

    path: Path
    task: str
    display_name: str
    version: str
    classes: tuple[ClassInfo, ...]
    input: InputSpec
    temperature: float
    review_threshold: float
    decision_threshold: float
    ood_threshold: float | None
    patch: PatchGrid  # patch models: patch side and stride on the slide (others: the input width)
    slide_step: SlideStep | None = None  # patch models: run over the whole slide before the decision rule
    mpp: float | None = None  # patch models: µm per input pixel (whole slides are read at this scale)
    review_band: ReviewBand | None = None  # two-class models: Review on both sides of the decision threshold
    fraction_estimator: FractionEstimator | None = None  # patch models: how the slide's fraction and interval are made
    colour_guard: ColourGuard | None = None  # patch models: colour statistics far from the training patches: Unfamiliar
    review_classes: tuple[str, ...] = ()  # site models: classes with too few verified cells; their calls go to Review
    sha256: str = field(default="", compare=False)  # of the model file: what a session is bound to
    metrics: dict = field(default_factory=dict, compare=False)
    dataset: dict = field(default_factory=dict, compare=False)
    provenance: dict = field(default_factory=dict, compare=False)
    site: dict = field(default_factory=dict, compare=False)  # site models: base SHA-256, approval, figures

    @property
    def key(self) -> str:
        return self.path.stem

    @property
    def class_keys(self) -> list[str]:
        return [c.key for c in self.classes]

    @property
    def accuracy_label(self) -> str:
        """What the accuracy figure is: a site model's never comes from a held-out test split."""
        return "site cross-validated accuracy" if self.site or self.metrics.get("cross_validated") else "test accuracy"

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def item_noun(self) -> str:
        """What one image of this assay is called on screen: a cell, or a patch of tissue."""
        return "patch(es)" if self.task == IDC else "cell(s)"

    def label_of(self, key: str) -> str:
        return next((c.label for c in self.classes if c.key == key), key)

    def short_label_of(self, key: str) -> str:
        """A label that fits under a thumbnail: 'Immature granulocyte' becomes 'IG'."""
        label = self.label_of(key)
        if len(label) <= 12:
            return label
        return key.upper() if len(key) <= 4 else label.split()[0]

    def group_of(self, key: str) -> str:
        return next((c.group for c in self.classes if c.key == key), "")

    @property
    def site_provenance(self) -> SiteProvenance | None:
        """A site model's `site` metadata, typed (older files' forms read too); None for other models."""
        return SiteProvenance.from_dict(self.site, self.display_name) if self.site else None



def _json(meta: dict[str, str], key: str, path: Path):
    try:
        return json.loads(meta[key])
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelError(f"{path.name}: metadata '{key}' is not valid JSON") from exc


def _patch_grid(meta: dict[str, str], width: int, path: Path) -> PatchGrid:
    """`patch_size` (default: input width) and `patch_stride` (default: patch_size), whole slide pixels."""
    values = {}
    for key, default in (("patch_size", width), ("patch_stride", None)):
        value = _json(meta, key, path) if key in meta else (default or values["patch_size"])
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4096):
            raise ModelError(f"{path.name}: metadata '{key}' must be a whole number of pixels (1-4096)")
        values[key] = value
    return PatchGrid(values["patch_size"], values["patch_stride"])


def _slide_step(meta: dict[str, str], n_classes: int, path: Path) -> SlideStep | None:
    try:
        step = parse_slide_step(meta.get("slide_step"))
    except SlideStepError as exc:
        raise ModelError(f"{path.name}: {exc}") from exc
    if step is not None and n_classes != 2:
        raise ModelError(f"{path.name}: slide_step needs a two-class patch model")
    return step


def _quantification(meta: dict[str, str], decision: float, n_classes: int, path: Path) -> dict:
    """The two-class model's Review band, fraction estimator and colour guard (each optional)."""
    try:
        parts = {"review_band": parse_review_band(meta.get("review_band"), decision, n_classes),
                 "fraction_estimator": parse_estimator(meta.get("fraction_estimator")),
                 "colour_guard": parse_colour_guard(meta.get("colour_guard"))}
    except (QuantificationError, ColourGuardError) as exc:
        raise ModelError(f"{path.name}: {exc}") from exc
    if parts["colour_guard"] is not None and "ood_threshold" not in meta:
        raise ModelError(f"{path.name}: colour_guard needs an ood_threshold (its score is in that unit)")
    return parts


def _review_classes(meta: dict[str, str], keys: set[str], path: Path) -> tuple[str, ...]:
    if "review_classes" not in meta:
        return ()
    value = _json(meta, "review_classes", path)
    if not isinstance(value, list) or not all(isinstance(k, str) and k in keys for k in value):
        raise ModelError(f"{path.name}: metadata 'review_classes' must be a list of the model's class keys")
    return tuple(value)


MAX_METADATA_CHARS = 1_000_000  # all values together: a card's worth, not a payload


def _check_metadata_types(meta: dict[str, str], path: Path) -> None:
    """The parts of the contract a JSON parser alone would let through (see parse_metadata)."""
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_METADATA_CHARS:
        raise ModelError(f"{path.name}: its metadata is larger than {MAX_METADATA_CHARS:,} characters")
    for key in ("metrics", "dataset", "provenance", "site"):
        if key in meta and not isinstance(_json(meta, key, path), dict):
            raise ModelError(f"{path.name}: metadata '{key}' must be a JSON object")


def _finite(value: float | None, key: str, path: Path, lo: float, hi: float) -> float | None:
    if value is not None and not (math.isfinite(value) and lo <= value <= hi):
        raise ModelError(f"{path.name}: metadata '{key}' is {value}, outside [{lo:g}, {hi:g}]")
    return value


def _check_identity(meta: dict[str, str], path: Path) -> None:
    """A SlideTally model of a known schema and task, with every required key."""
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if "slidetally.schema" in missing:
        raise ModelError(f"{path.name} is not a SlideTally model (no 'slidetally.schema' in its metadata)")
    if missing:
        raise ModelError(f"{path.name}: metadata is missing {', '.join(missing)}")
    if not meta["slidetally.schema"].startswith(SCHEMA_PREFIX):
        raise ModelError(f"{path.name}: unknown schema {meta['slidetally.schema']!r}")
    if meta["task"] not in TASKS:
        raise ModelError(f"{path.name}: task {meta['task']!r} is not one this app knows ({', '.join(TASKS)})")


def _classes(meta: dict[str, str], path: Path) -> tuple[ClassInfo, ...]:
    """At least two classes, each key once."""
    raw_classes = _json(meta, "classes", path)
    try:
        classes = tuple(ClassInfo.from_dict(c) for c in raw_classes)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path.name}: metadata 'classes' must be a list of {{key, label, group, hotkey}}") from exc
    if len(classes) < 2:
        raise ModelError(f"{path.name}: a model needs at least two classes")
    if len({c.key for c in classes}) != len(classes):
        raise ModelError(f"{path.name}: two classes share a key in its metadata")
    return classes


def _input_spec(meta: dict[str, str], path: Path) -> InputSpec:
    """`input_size` [height, width], the resize method and the rule for small images."""
    size = _json(meta, "input_size", path)
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 8 <= v <= 1024 for v in size)):
        raise ModelError(f"{path.name}: metadata 'input_size' must be [height, width]")
    resize = meta.get("resize", "area")
    small = meta.get("small_input", "resize")
    if resize not in INTERPOLATIONS:
        raise ModelError(f"{path.name}: unknown resize method {resize!r}")
    if small not in SMALL_INPUT_RULES:
        raise ModelError(f"{path.name}: unknown small_input rule {small!r}")
    return InputSpec(size[0], size[1], resize, small)


def _bounded(meta: dict[str, str], path: Path, key: str, default: float | None, lo: float, hi: float) -> float | None:
    """A number in the metadata (or `default`), finite and within [lo, hi]."""
    try:
        value = float(meta[key]) if key in meta else default
    except ValueError as exc:
        raise ModelError(f"{path.name}: metadata '{key}' is not a number") from exc
    return _finite(value, key, path, lo, hi)


def parse_metadata(meta: dict[str, str], path: Path, sha256: str = "") -> ModelInfo:
    _check_identity(meta, path)
    classes = _classes(meta, path)
    _check_metadata_types(meta, path)
    spec = _input_spec(meta, path)
    decision = _bounded(meta, path, "decision_threshold", 0.5, 0.0, 1.0)
    return ModelInfo(
        path=path, sha256=sha256, task=meta["task"], display_name=meta["display_name"], version=meta["version"], classes=classes,
        input=spec,
        temperature=_bounded(meta, path, "temperature", 1.0, 1e-3, 1e3),
        review_threshold=_bounded(meta, path, "review_threshold", 0.0, 0.0, 1.0),
        decision_threshold=decision,
        ood_threshold=_bounded(meta, path, "ood_threshold", None, 0.0, 1e9),
        patch=_patch_grid(meta, spec.width, path), slide_step=_slide_step(meta, len(classes), path),
        mpp=_bounded(meta, path, "mpp", IDC_MPP if meta["task"] == IDC else None, *MPP_RANGE),
        metrics=_json(meta, "metrics", path) if "metrics" in meta else {},
        dataset=_json(meta, "dataset", path) if "dataset" in meta else {},
        provenance=_json(meta, "provenance", path) if "provenance" in meta else {},
        site=_json(meta, "site", path) if "site" in meta else {},
        review_classes=_review_classes(meta, {c.key for c in classes}, path),
        **_quantification(meta, decision, len(classes), path),
    )
