"""One AssayReport per session: every number and word an outlet shows (GUI panel, CLI, summary
CSV, PDF, HL7 v2, FHIR) is decided here, once. Outlets only lay it out; none recomputes a number.

Values are rounded here to the precision they are reported at, and flags are taken on the
rounded value, so a reader never sees "80.0 H"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from desktop import __version__
from desktop.core.inference.contract import NRBC_GROUP, PLATELET_GROUP, WBC_GROUP
from desktop.core.inference.model_info import BLOOD, IDC, ModelInfo
from desktop.core.records.domain import AuditEntry, Cell, FolderChanges, SessionRecord
from desktop.core.report.codes import ResultCode, code_for, load_codes
from desktop.core.report.precision import precision_note, wilson
from desktop.core.report.summary import (
    DEFAULT_TARGET_WBC,
    Counts,
    ReferenceIntervals,
    SlideSummary,
    class_percentages,
    count_warnings,
    counts,
    differential,
    flag_of,
    idc_summary,
)

DECIMALS = 1  # every percentage and ratio is reported to one decimal
GALLERY_PER_CLASS = 24  # thumbnails per class on the PDF's gallery page
IDC_REFERENCE_NOTE = ("No reference interval applies: the IDC fraction estimates the share of this slide's tissue "
                      "patches that show IDC, every patch counted (the technician's call where given, otherwise the "
                      "model's, patches awaiting review included), with its 95% interval; it is not a clinical grade.")


@dataclass(frozen=True)
class Unit:
    symbol: str  # as printed beside a number: "%", "/100 WBC"
    ucum: str  # as sent to the LIS
    text: str  # in words, for headings: "% of WBC"


PERCENT_OF_WBC = Unit("%", "%", "% of WBC")
PER_100_WBC = Unit("/100 WBC", "/100{WBCs}", "per 100 WBC")
PERCENT_OF_IMAGES = Unit("%", "%", "% of classified images")
PERCENT_OF_PATCHES = Unit("%", "%", "% of tissue patches")
CELLS = Unit("cells", "{cells}", "cells counted")


def unit_of(group: str, blood: bool) -> Unit | None:
    """The one rule for a class's unit, from its group: WBC classes % of WBC, NRBC per 100 WBC,
    platelets none (counted apart); in other assays % of the classified images."""
    if not blood:
        return PERCENT_OF_IMAGES
    return {WBC_GROUP: PERCENT_OF_WBC, NRBC_GROUP: PER_100_WBC}.get(group)


def number(value: float | int | None, decimals: int = DECIMALS, decimal: str = ".") -> str:
    """A reported number as text ('' when there is none); `decimal` is ',' for a decimal-comma locale."""
    if value is None:
        return ""
    text = f"{value:.{decimals}f}" if decimals else str(int(round(value)))
    return text.replace(".", decimal) if decimal != "." else text


def percent_text(fraction: float | None) -> str:
    """A model's accuracy as every outlet writes it: one decimal ('97.8%'), 'n/a' when there is none."""
    return "n/a" if fraction is None else f"{100 * fraction:.{DECIMALS}f}%"


@dataclass(frozen=True)
class Result:
    """One reported quantity: a class's share, NRBC per 100 WBC, the WBC count, the IDC fraction."""

    key: str
    label: str
    value: float | None  # already rounded to `decimals`
    unit: Unit
    decimals: int = DECIMALS
    interval: tuple[float, float] | None = None
    flag: str = ""  # "H", "L" or ""
    count: int | None = None  # the final count behind the value
    code: ResultCode | None = None
    ci: tuple[float, float] | None = None  # 95% interval of the value (same unit and rounding), where one is given

    def text(self, decimal: str = ".") -> str:
        return number(self.value, self.decimals, decimal)

    def ci_text(self, decimal: str = ".") -> str:
        """'12.0–35.1' (en dash), or '' without an interval."""
        if self.ci is None:
            return ""
        return f"{number(self.ci[0], self.decimals, decimal)}–{number(self.ci[1], self.decimals, decimal)}"


@dataclass(frozen=True)
class ClassLine:
    key: str
    label: str
    group: str
    ai: int
    final: int
    result: Result | None  # its reported value, when the assay reports one for this class


@dataclass(frozen=True)
class ModelIdentity:
    key: str
    display_name: str
    version: str
    sha256: str
    task: str
    accuracy: float | None
    macro_f1: float | None
    n_test: int | str
    patch_size: int  # the side of a tile cut from a tissue image (thumbnails of tiles)
    accuracy_label: str = "test accuracy"  # a site model's is "site cross-validated accuracy"
    mpp: float | None = None  # patch models: µm per input pixel (tiles of whole slides are read at it)


@dataclass(frozen=True)
class Reopen:
    at: str
    by: str
    reason: str


@dataclass(frozen=True)
class GalleryClass:
    """A class's final calls shown as thumbnails: the most confident first, at most GALLERY_PER_CLASS."""

    key: str
    label: str
    count: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class AssayReport:
    record: SessionRecord
    model: ModelIdentity
    app_version: str
    classes: tuple[ClassLine, ...]
    tally: Counts
    results: tuple[Result, ...]  # what goes to the LIS, in order
    warnings: tuple[str, ...]
    reference_source: str  # where the reference intervals come from, or why none apply
    generated_at: str
    generated_by: str
    changes: FolderChanges | None = None
    reopens: tuple[Reopen, ...] = ()
    corrections: tuple[str, ...] = ()  # what changed after the first sign-off (a corrected report names it)
    target: int | None = None  # WBC to count (blood)
    wbc: int | None = None
    platelets: int | None = None
    slide: SlideSummary | None = field(default=None, compare=False)  # IDC fraction and heat map grids
    ai_fraction: Result | None = None  # IDC: the model's own fraction before review, shown apart, never sent to the LIS
    panel: ResultCode | None = None
    gallery: tuple[GalleryClass, ...] = ()

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def blood(self) -> bool:
        return self.model.task == BLOOD

    @property
    def status(self) -> str:
        """'final' once signed off, 'corrected' when signed off again after a reopen, else 'preliminary'."""
        return self.record.status

    @property
    def final(self) -> bool:
        return self.record.signed

    @property
    def corrected(self) -> bool:
        return self.record.signed and self.record.corrected

    @property
    def specimen_id(self) -> str:
        return self.record.specimen_id

    def below_target(self) -> str:
        """Sign-off's question when fewer white cells are counted than the target ('' when none)."""
        if not self.blood or self.wbc is None or self.target is None or self.wbc >= self.target:
            return ""
        return (f"Only {self.wbc} white cells are counted; the target is {self.target}. The percentages are imprecise. "
                "Sign off anyway?")

    def fraction_detail(self, decimal: str = ".") -> str:
        """What the IDC figure stands on, in one line every outlet prints beside it: '95% CI 12.0–35.1%;
        212 of 905 tissue patches called IDC, 120 awaiting review (counted at the AI's call)'."""
        fraction, slide = self.result("idc_fraction"), self.slide
        if fraction is None or fraction.value is None or slide is None:
            return ""
        parts = [f"95% CI {fraction.ci_text(decimal)}{fraction.unit.symbol}"] if fraction.ci else []
        pending = (f", {slide.pending_review} awaiting review (counted at the AI's call)"
                   if slide.pending_review else "")
        parts.append(f"{slide.idc} of {slide.patches} tissue patches called IDC{pending}")
        return "; ".join(parts)

    def result(self, key: str) -> Result | None:
        return next((r for r in self.results if r.key == key), None)

    @property
    def precision(self) -> str:
        """What the differential's intervals mean for this count ('' for other assays)."""
        return precision_note(self.wbc or 0) if self.blood else ""

    @property
    def differential(self) -> tuple[ClassLine, ...]:
        """The classes with a reported value, in the model's order."""
        return tuple(c for c in self.classes if c.result is not None)

    @property
    def changes_note(self) -> str | None:
        """The folder's changes not in these results (after sign-off, or not yet classified), in one line."""
        if self.changes is None or not self.changes.any:
            return None
        when = "since sign-off" if self.record.signed else "not yet classified"
        return f"Folder changed {when}, not in these results: {self.changes.summary()}"

    def identity(self) -> list[tuple[str, str, str]]:
        """(name, label, value) of who and what the report belongs to: the head of every outlet."""
        r, m = self.record, self.model
        rows = [
            ("specimen_id", "Specimen ID", r.specimen_id or "(not entered)"),
            ("patient_id", "Patient ID", r.patient_id),
            ("folder", "Folder", r.folder),
            *([("slide_scale", "Slide scale", r.slide_scale)] if r.slide_scale else []),
            ("assay", "Assay", m.display_name),
            ("model", "Model", f"{m.key} v{m.version}"),
            ("model_sha256", "Model SHA-256", m.sha256),
            ("app_version", "SlideTally version", self.app_version),
            ("status", "Status", r.status_line()),
            ("report_status", "Report status", self.status),
            ("signed_by", "Signed off by", r.signed_by if r.signed else ""),
            ("signed_at", "Signed off at", r.signed_at if r.signed else ""),
            ("verified_by", "Verified by", r.verified_by),
            ("verified_at", "Verified at", r.verified_at),
        ]
        rows += [("reopened", "Reopened", f"{o.at} by {o.by}: {o.reason}") for o in self.reopens]
        if self.corrected:
            rows.append(("corrected", "Corrected", "; ".join(self.corrections) or "no call changed"))
        if self.changes is not None and self.changes.any:
            rows.append(("folder_changes", "Folder changed since sign-off" if r.signed
                         else "Folder changes not yet classified", self.changes.summary()))
        rows += [("exported_at", "Exported", self.generated_at), ("exported_by", "Exported by", self.generated_by)]
        return rows


def _model_identity(info: ModelInfo) -> ModelIdentity:
    m = info.metrics
    return ModelIdentity(info.key, info.display_name, info.version, info.sha256, info.task, m.get("accuracy"),
                         m.get("macro_f1"), m.get("n", "?"), info.patch.size, info.accuracy_label, info.mpp)


def _reopens(audit: Iterable[AuditEntry]) -> tuple[Reopen, ...]:
    return tuple(Reopen(e.at, e.operator, e.reason or "") for e in audit if e.action == "reopen")


CELL_ACTIONS = ("reclassify", "confirm", "undo", "redo")


def _corrections(audit: Iterable[AuditEntry], info: ModelInfo) -> tuple[str, ...]:
    """What a correction changed since the first reopen: each cell's net change of call, counted
    per change (e.g. "2 cells neutrophil → lymphocyte"), and any new target count or identity."""
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    other: list[str] = []
    reopened = False
    for e in audit:
        reopened = reopened or e.action == "reopen"
        if not reopened:
            continue
        if e.action in CELL_ACTIONS and e.file:  # an undo's "x (confirmed)" is class x
            first.setdefault(e.file, (e.old or "").split(" (")[0])
            last[e.file] = (e.new or "").split(" (")[0]
        elif e.action in ("target count", "specimen"):
            other.append(f"{e.action} {e.old or '(none)'} → {e.new}")
    moves = Counter((first[f], last[f]) for f in first if first[f] != last[f])
    lines = [f"{n} {info.item_noun} {info.label_of(old)} → {info.label_of(new)}" for (old, new), n in sorted(moves.items())]
    return tuple(lines + other)


def _gallery(cells: list[Cell], info: ModelInfo) -> tuple[GalleryClass, ...]:
    by_class: dict[str, list[Cell]] = {k: [] for k in info.class_keys}
    for c in cells:
        if c.counted and c.call in by_class:
            by_class[c.call].append(c)
    return tuple(GalleryClass(k.key, k.label, len(by_class[k.key]),
                              tuple(c.file for c in sorted(by_class[k.key], key=lambda c: -c.confidence)[:GALLERY_PER_CLASS]))
                 for k in info.classes)


def _count_ci(tally: Counts, key: str, unit: Unit, groups: dict[str, str]) -> tuple[float, float] | None:
    """A counted percentage's 95% interval from the number of cells behind it (`precision.wilson`): WBC
    classes out of the white cells counted; other assays' classes out of every classified image."""
    if unit not in (PERCENT_OF_WBC, PERCENT_OF_IMAGES):
        return None
    n = sum(v for k, v in tally.final.items() if unit != PERCENT_OF_WBC or groups.get(k) == WBC_GROUP)
    if n == 0:
        return None
    low, high = wilson(tally.final.get(key, 0), n)
    return round(100 * low, DECIMALS), round(100 * high, DECIMALS)


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, DECIMALS)


def _idc_fraction(slide: SlideSummary, codes: dict[str, ResultCode]) -> Result:
    """The one IDC figure every outlet shows and sends: the estimate over every tissue patch and its interval."""
    ci = None if slide.interval is None else (_percent(slide.interval[0]), _percent(slide.interval[1]))
    return Result("idc_fraction", "IDC fraction", _percent(slide.fraction), PERCENT_OF_PATCHES, DECIMALS,
                  count=slide.idc, code=code_for(codes, "idc_fraction"), ci=ci)


def build_report(cells: list[Cell], info: ModelInfo, record: SessionRecord, *, audit: Iterable[AuditEntry] = (),
                 changes: FolderChanges | None = None, target: int = DEFAULT_TARGET_WBC,
                 reference: ReferenceIntervals | None = None, codes: dict[str, ResultCode] | None = None,
                 generated_at: str = "", generated_by: str = "", app_version: str = __version__,
                 with_gallery: bool = True) -> AssayReport:
    """The session's report from its cells and record; the only place its numbers are computed."""
    codes = codes if codes is not None else load_codes()
    tally = counts(cells, info)
    blood = info.task == BLOOD
    groups = {c.key: c.group for c in info.classes}
    values = class_percentages(tally.final, info)
    reference = (reference or ReferenceIntervals.load()) if blood else None
    lines, results = [], []
    for c in info.classes:
        unit = unit_of(c.group, blood) if info.task != IDC else None
        value = values[c.key]
        result = None
        if unit is not None and (blood or info.task != IDC):
            shown = None if value is None else round(value, DECIMALS)
            interval = reference.intervals.get(c.key) if reference else None
            result = Result(c.key, c.label, shown, unit, DECIMALS, interval, flag_of(shown, interval),
                            tally.final[c.key], code_for(codes, c.key, c.group), _count_ci(tally, c.key, unit, groups))
            if shown is not None:
                results.append(result)
        lines.append(ClassLine(c.key, c.label, c.group, tally.ai[c.key], tally.final[c.key], result))
    warnings: list[str]
    slide = wbc = platelets = ai_fraction = None
    if blood:
        diff = differential(cells, info, target, tally)
        wbc, platelets, warnings = diff.wbc, diff.platelets, list(diff.warnings)
        results.append(Result("wbc_counted", "White cells counted", wbc, CELLS, 0, count=wbc,
                              code=code_for(codes, "wbc_counted")))
        if any(g == PLATELET_GROUP for g in groups.values()):
            results.append(Result("platelets_counted", "Platelets counted (apart)", platelets, CELLS, 0, count=platelets,
                                  code=code_for(codes, "platelets_counted")))
        source = reference.source if reference else ""
    else:
        warnings = count_warnings(tally, info.item_noun, review_counted=info.task == IDC)
        source = IDC_REFERENCE_NOTE if info.task == IDC else "No reference intervals for this assay."
        if info.task == IDC:
            slide = idc_summary(cells, info, tally=tally)
            results.append(_idc_fraction(slide, codes))
            ai_value = None if slide.ai_fraction is None else round(100 * slide.ai_fraction, DECIMALS)
            ai_fraction = Result("idc_fraction_ai", "IDC fraction, AI only (before review)", ai_value,
                                 PERCENT_OF_PATCHES, DECIMALS, count=slide.ai_idc)
    return AssayReport(
        record=record, model=_model_identity(info), app_version=app_version, classes=tuple(lines), tally=tally,
        results=tuple(results), warnings=tuple(warnings), reference_source=source, generated_at=generated_at,
        generated_by=generated_by, changes=changes, reopens=_reopens(audit), corrections=_corrections(audit, info),
        target=target if blood else None,
        wbc=wbc, platelets=platelets, slide=slide, ai_fraction=ai_fraction, panel=codes.get(f"panel:{info.task}"),
        gallery=_gallery(cells, info) if with_gallery else ())

