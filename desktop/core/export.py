"""CSV export: per-image and summary files, UTF-8 with BOM (Excel), RFC 4180 quoting,
a header block naming model, operator and time, written atomically (temp file + rename).

Every cell a spreadsheet would run as a formula is escaped, and file names that are not
valid UTF-8 are written in their readable form."""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import time
from pathlib import Path

import psutil

from desktop.core.model import ModelInfo
from desktop.core.names import readable
from desktop.core.record import FolderChanges, SessionRecord, record_lines
from desktop.core.store import AuditEntry, Cell
from desktop.core.summary import Differential, counts, differential, idc_summary


class ExportError(Exception):
    """The export could not be written; nothing partial was left behind."""


_STALE_TEMP_S = 600  # a temp file this old, of a process that is gone, is a killed export's leftover


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _remove_leftovers(path: Path) -> None:
    """Temp files of earlier exports to `path` that were killed before they could clean up."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp$")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if not match or psutil.pid_exists(int(match.group(1))):
            continue
        try:
            if time.time() - sibling.lstat().st_mtime > _STALE_TEMP_S:
                sibling.unlink()
        except OSError:
            pass


def write_atomically(path: Path, text: str, encoding: str = "utf-8-sig") -> None:
    """Write the whole file or nothing: a temp file beside it, renamed over it at the end.
    The file gets the permissions the umask gives (0644 under 022), like any file the user makes."""
    path = Path(path)
    _remove_leftovers(path)
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise ExportError(f"Cannot write in {readable(str(path.parent))}: {exc.strerror or exc}. "
                          "Choose another folder.") from exc
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk, or Ctrl+C: no temp file survives
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ExportError(f"Could not write {readable(path.name)}: {exc.strerror or exc}") from exc
        raise


def _header(info: ModelInfo, record: SessionRecord, changes: FolderChanges | None, operator: str,
            when: str) -> list[list[str]]:
    lines = [["# SlideTally export"], ["# assay", info.display_name]]
    lines += [[f"# {label}", value] for label, value in record_lines(record, changes)]
    return lines + [["# exported", when], ["# exported by", operator]]


# OWASP "CSV injection": a cell that starts with one of these is run as a formula by Excel,
# LibreOffice or Sheets. defusedcsv escapes neither tab nor CR and rewrites '|' inside values,
# so the rule is written here.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value):
    """A cell as a spreadsheet may show it: readable text, a formula start escaped with a quote."""
    if not isinstance(value, str):
        return value
    value = readable(value)
    if value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def render_csv(rows: list[list]) -> str:
    """Every CSV the app writes goes through here."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


def per_image_rows(cells: list[Cell], info: ModelInfo) -> list[list]:
    keys = info.class_keys
    rows = [["file", "ai_class", "ai_confidence", "second_class", "final_class", "changed", "review", "review_reason",
             "confirmed", "unfamiliar", "ood_score", "unreadable", "reviewer", "missing", "file_changed", "x", "y"]
            + [f"p_{k}" for k in keys]]
    for c in cells:
        probs = [f"{p:.4f}" for p in c.probabilities] if c.probabilities else [""] * len(keys)
        rows.append([
            c.file, c.ai_class or "", f"{c.confidence:.4f}" if not c.unreadable else "", c.second_class or "",
            (c.final_class or c.ai_class or "") if not c.needs_review else "", int(c.changed), int(c.review),
            c.review_reason, int(c.confirmed), int(c.unfamiliar),
            f"{c.ood_score:.4f}" if c.ood_score is not None else "", c.unreadable, c.reviewer or "",
            int(c.missing), int(c.file_changed), "" if c.x is None else c.x, "" if c.y is None else c.y, *probs,
        ])
    return rows


def summary_rows(cells: list[Cell], info: ModelInfo, diff: Differential | None = None) -> list[list]:
    tally = counts(cells, info)
    rows: list[list] = [["section", "class", "label", "ai_count", "final_count", "value", "unit", "reference", "flag"]]
    diff_rows = {r.key: r for r in diff.rows} if diff else {}
    for c in info.classes:
        r = diff_rows.get(c.key)
        value = "" if r is None or r.percent is None else f"{r.percent:.1f}"
        unit = "" if r is None or r.percent is None else ("per 100 WBC" if c.group == "nrbc" else "% of WBC")
        ref = "" if r is None or r.interval is None else f"{r.interval[0]:g}-{r.interval[1]:g}"
        rows.append(["count", c.key, c.label, tally.ai[c.key], tally.final[c.key], value, unit, ref,
                     r.flag if r else ""])
    rows.append(["total", "images", "", tally.total, sum(tally.final.values()), "", "", "", ""])
    rows.append(["total", "review_pending", "", tally.pending_review, "", "", "", "", ""])
    rows.append(["total", "unfamiliar_excluded", "", tally.unfamiliar_excluded, "", "", "", "", ""])
    rows.append(["total", "unreadable", "", tally.unreadable, "", "", "", "", ""])
    rows.append(["total", "missing_not_counted", "", tally.missing, "", "", "", "", ""])
    rows += [["left_out", kind, "", n, "", "", "", "", ""] for kind, n in tally.left_out.items()]
    if diff:
        rows.append(["differential", "wbc_counted", "", "", diff.wbc, "", "", f"target {diff.target}", ""])
        rows.append(["differential", "platelets", "", "", diff.platelets, "", "counted apart", "", ""])
        nrbc = "" if diff.nrbc_per_100_wbc is None else f"{diff.nrbc_per_100_wbc:.1f}"
        rows.append(["differential", "nrbc_per_100_wbc", "", "", "", nrbc, "per 100 WBC", "", ""])
        for w in diff.warnings:
            rows.append(["warning", "", w, "", "", "", "", "", ""])
    if info.task == "idc-patch":
        slide = idc_summary(cells, info)
        value = "" if slide.fraction is None else f"{100 * slide.fraction:.1f}"
        rows.append(["slide", "idc_fraction", "IDC patches / classified patches", "", slide.idc, value, "%", "", ""])
    return rows


def export_csv(cells: list[Cell], info: ModelInfo, per_image: Path | None, summary: Path | None, *,
               record: SessionRecord, operator: str, when: str, changes: FolderChanges | None = None,
               target: int = 100) -> None:
    if per_image and summary and _same_file(Path(per_image), Path(summary)):
        raise ExportError(f"The per-image and the summary CSV would both be {readable(str(per_image))}: "
                          "give them different names.")
    head = _header(info, record, changes, operator, when)
    if per_image:
        write_atomically(per_image, render_csv(head + [[]] + per_image_rows(cells, info)))
    if summary:
        diff = differential(cells, info, target=target) if info.task == "blood-differential" else None
        write_atomically(summary, render_csv(head + [[]] + summary_rows(cells, info, diff)))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def export_audit_csv(entries: list[AuditEntry], path: Path, record: SessionRecord, when: str) -> None:
    """The session's audit trail, oldest first, with the identity block on top."""
    head = [["# SlideTally audit trail"]] + [[f"# {label}", value] for label, value in record_lines(record)]
    rows = [["time", "operator", "os_account", "action", "file", "old", "new", "reason"]]
    rows += [[e.at, e.operator, e.os_user, e.action, e.file or "", e.old or "", e.new or "", e.reason or ""]
             for e in entries]
    write_atomically(path, render_csv(head + [["# exported", when], []] + rows))
