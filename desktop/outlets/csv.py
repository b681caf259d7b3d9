"""CSV export: the per-image table (header row first, a JSON sidecar naming what it belongs to)
and the summary file (identity, counts, results, warnings), UTF-8 with BOM (Excel), RFC 4180
quoting, comma or semicolon + decimal comma, written atomically (temp file + rename).

Every cell a spreadsheet would run as a formula is escaped, and file names that are not
valid UTF-8 are written in their readable form."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from desktop.core.atomic import all_or_none
from desktop.core.errors import ActionRefused, ExportError
from desktop.core.names import readable
from desktop.core.records.domain import AuditEntry, Cell, SessionRecord, record_lines
from desktop.core.report.assay_report import AssayReport, Result, number
from desktop.core.report.summary import decided_p_positive

# OWASP "CSV injection": a cell that starts with one of these is run as a formula by Excel,
# LibreOffice or Sheets. defusedcsv escapes neither tab nor CR and rewrites '|' inside values,
# so the rule is written here.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+[.,]?\d*|[.,]\d+)([eE][+-]?\d+)?$")  # either decimal mark


def safe_cell(value: object) -> object:
    """A cell as a spreadsheet may show it: readable text, a formula start escaped with a quote."""
    if not isinstance(value, str):
        return value
    value = readable(value)
    if value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


@dataclass(frozen=True)
class CsvStyle:
    """Separator and decimal mark: ',' and '.' by default; ';' and ',' where the decimal mark is a comma
    (European Excel splits '12.5' or reads it as a date otherwise)."""

    delimiter: str = ","
    decimal: str = "."

    @classmethod
    def for_decimal_point(cls, point: str) -> CsvStyle:
        return DECIMAL_COMMA if point == "," else COMMA

    @classmethod
    def named(cls, name: str) -> CsvStyle:
        """'comma' or 'semicolon' (semicolon separator and decimal comma), as the CLI's --csv-locale takes them."""
        styles = {"comma": COMMA, "semicolon": DECIMAL_COMMA, "decimal-comma": DECIMAL_COMMA}
        if name not in styles:
            raise ActionRefused(f"--csv-locale must be 'comma' or 'semicolon', not {name!r}")
        return styles[name]


COMMA = CsvStyle()
DECIMAL_COMMA = CsvStyle(";", ",")


def render_csv(rows: list[list], style: CsvStyle = COMMA) -> str:
    """Every CSV the app writes goes through here."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=style.delimiter, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


def _plain(value: float | None, decimal: str) -> str:
    """A reference limit as written in the intervals file (40, 0.5), with the style's decimal mark."""
    return "" if value is None else f"{value:g}".replace(".", decimal)


def per_image_rows(cells: list[Cell], class_keys: list[str], style: CsvStyle = COMMA,
                   labels: dict[str, str] | None = None) -> list[list]:
    """The per-cell table: the header row first, one row per image, nothing else. `final_label` is
    the class as the screen names it ("No IDC" for the key "normal")."""
    labels = labels or {}
    def num(value: float | None) -> str:
        return "" if value is None else number(value, 4, style.decimal)

    positive = class_keys[1] if len(class_keys) == 2 else None
    rows = [["file", "ai_class", "ai_confidence", "second_class", "final_class", "final_label",
             "changed", "review", "review_reason",
             "confirmed", "unfamiliar", "ood_score", "unreadable", "reviewer", "missing", "file_changed", "x", "y"]
            + [f"p_{k}" for k in class_keys] + ([f"p_{positive}_decided"] if positive else [])]
    for c in cells:
        probs = [num(p) for p in c.probabilities] if c.probabilities else [""] * len(class_keys)
        if positive:
            decided = decided_p_positive(c, positive)
            probs.append("" if decided != decided else num(decided))  # NaN: no call
        final = (c.call or "") if not c.needs_review else ""
        rows.append([
            c.file, c.ai_class or "", num(c.confidence) if not c.unreadable else "", c.second_class or "",
            final, labels.get(final, ""), int(c.changed), int(c.review),
            c.review_reason, int(c.confirmed), int(c.unfamiliar), num(c.ood_score), c.unreadable, c.reviewer or "",
            int(c.missing), int(c.file_changed), "" if c.x is None else c.x, "" if c.y is None else c.y, *probs,
        ])
    return rows


SUMMARY_COLUMNS = ["section", "item", "label", "ai_count", "final_count", "value", "unit", "ref_low", "ref_high", "flag",
                   "code", "code_system", "ci_low", "ci_high"]


def _result_cells(r: Result | None, style: CsvStyle) -> list:
    if r is None:
        return [""] * 9
    low, high = r.interval if r.interval else (None, None)
    ci_low, ci_high = (number(v, r.decimals, style.decimal) for v in r.ci) if r.ci else ("", "")
    return [r.text(style.decimal), r.unit.text, _plain(low, style.decimal), _plain(high, style.decimal), r.flag,
            r.code.code if r.code else "", r.code.system if r.code else "", ci_low, ci_high]


def summary_rows(report: AssayReport, style: CsvStyle = COMMA) -> list[list]:
    """The summary file: identity, counts with the reported values, totals, results, warnings; one table."""
    blank = [""] * 9
    rows: list[list] = [list(SUMMARY_COLUMNS)]
    rows += [["identity", name, label, "", "", value, *blank[1:]] for name, label, value in report.identity()]
    rows.append(["identity", "reference_source", "Reference intervals", "", "", report.reference_source, *blank[1:]])
    for c in report.classes:
        rows.append(["count", c.key, c.label, c.ai, c.final, *_result_cells(c.result, style)])
    t = report.tally
    totals = [("images", t.total, sum(t.final.values())), ("review_pending", t.pending_review, ""),
              ("unfamiliar_excluded", t.unfamiliar_excluded, ""), ("unreadable", t.unreadable, ""),
              ("missing_not_counted", t.missing, "")]
    rows += [["total", item, "", ai, final, *blank] for item, ai, final in totals]
    rows += [["left_out", kind, "", n, "", *blank] for kind, n in t.left_out.items()]
    if report.target is not None:
        rows.append(["target", "wbc_target", "White cells to count", "", "", report.target, "cells", *blank[2:]])
    class_keys = {c.key for c in report.classes}
    for r in report.results:
        if r.key not in class_keys:
            rows.append(["result", r.key, r.label, "", r.count if r.count is not None else "", *_result_cells(r, style)])
    if report.ai_fraction is not None:
        ai = report.ai_fraction
        rows.append(["ai_only", ai.key, ai.label, ai.count if ai.count is not None else "", "",
                     *_result_cells(ai, style)])
    rows += [["warning", "", w, "", "", *blank] for w in report.warnings]
    return rows


def csv_files(report: AssayReport, cells: list[Cell], per_image: Path | None, summary: Path | None,
              style: CsvStyle = COMMA) -> list[tuple[Path, str, str]]:
    """(path, text, encoding) of the per-cell table, its JSON sidecar (who and what it belongs to) and
    the summary file, rendered, not written."""
    if per_image and summary and _same_file(Path(per_image), Path(summary)):
        raise ExportError(f"The per-image and the summary CSV would both be {readable(str(per_image))}: "
                          "give them different names.")
    files = []
    if per_image:
        per_image = Path(per_image)
        labels = {c.key: c.label for c in report.classes}
        files.append((per_image, render_csv(per_image_rows(cells, list(labels), style, labels), style), "utf-8-sig"))
        files.append((sidecar_path(per_image),
                      json.dumps(sidecar(report, style, cells), indent=2, ensure_ascii=False) + "\n", "utf-8"))
    if summary:
        files.append((Path(summary), render_csv(summary_rows(report, style), style), "utf-8-sig"))
    return files


def export_csv(report: AssayReport, cells: list[Cell], per_image: Path | None, summary: Path | None,
               style: CsvStyle = COMMA) -> None:
    """Write `csv_files` all or none (as the CLI writes its outputs): the per-image table, its sidecar and the
    summary are renamed into place together, so a failure leaves no table without its summary."""
    with all_or_none() as staged:
        for path, text, encoding in csv_files(report, cells, per_image, summary, style):
            staged.write(path, text, encoding=encoding)


def column_notes(class_keys: list[str]) -> dict[str, str]:
    """What each column of the per-cell table means (the sidecar carries it)."""
    notes = {
        "file": "the image's path in the folder (a tile of a slide: name#x<X>_y<Y>)",
        "ai_class": "the model's call, after any slide-level step",
        "ai_confidence": "the probability of the called class that the call was made on",
        "second_class": "the model's runner-up class",
        "final_class": "the counted call: the technician's where given, else the model's; empty while in Review",
        "final_label": "final_class as the screen names it",
        "changed": "1 when the technician changed the model's call",
        "review": "1 when the decision rule sent the image to Review",
        "review_reason": "why it went to Review (low confidence, unfamiliar image)",
        "confirmed": "1 when the technician accepted or gave the call",
        "unfamiliar": "1 when the image is unlike the training images (Unfamiliar score above the model's threshold)",
        "ood_score": "the Unfamiliar score (higher is stranger)",
        "unreadable": "why the image could not be used, else empty",
        "reviewer": "who gave or accepted the final call",
        "missing": "1 when the file is no longer in the folder (kept, not counted)",
        "file_changed": "1 when the file's bytes changed since an earlier call",
        "x": "the patch's x offset on the slide (px)", "y": "the patch's y offset on the slide (px)",
    }
    notes |= {f"p_{k}": f"the model's probability of {k} for this image alone (before any slide-level step)"
              for k in class_keys}
    if len(class_keys) == 2:
        notes[f"p_{class_keys[1]}_decided"] = (f"the probability of {class_keys[1]} the call was made on: after the "
                                               "slide-level step (neighbours on the slide), compared with the model's "
                                               "decision threshold and Review band")
    return notes


def sidecar_path(per_image: Path) -> Path:
    return Path(per_image).with_suffix(".json")


def sidecar(report: AssayReport, style: CsvStyle, cells: list[Cell] = ()) -> dict:
    """What the per-cell table's rows belong to, for scripts: identity, status, how to read the file,
    the classes' labels, and the real name of every file whose name the CSV had to defuse ("'=1+2.jpg")."""
    return {"slidetally_export": "per-cell", "identity": {name: value for name, _label, value in report.identity()},
            "status": report.status, "seal": report.record.seal, "delimiter": style.delimiter, "decimal": style.decimal,
            "class_keys": [c.key for c in report.classes], "class_labels": {c.key: c.label for c in report.classes},
            "columns": column_notes([c.key for c in report.classes]),
            "file_names_defused": {safe_cell(c.file): readable(c.file) for c in cells if safe_cell(c.file) != c.file}}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def export_audit_csv(entries: list[AuditEntry], path: Path, record: SessionRecord, when: str) -> None:
    """The session's audit trail, oldest first: a plain table (header row first, as pandas and Excel
    read it) and beside it a JSON sidecar with the record it belongs to; both or neither are written."""
    rows = [["time", "operator", "os_account", "action", "file", "old", "new", "reason"]]
    rows += [[e.at, e.operator, e.os_user, e.action, e.file or "", e.old or "", e.new or "", e.reason or ""]
             for e in entries]
    about = {"slidetally_export": "audit-trail", "exported": when,
             "record": {label: value for label, value in record_lines(record)}}
    with all_or_none() as staged:
        staged.write(path, render_csv(rows))
        staged.write(sidecar_path(path), json.dumps(about, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
