"""The report as plain text lines: what the CLI prints after classify and report."""

from __future__ import annotations

from desktop.core.report.assay_report import AssayReport
from desktop.core.report.summary import left_out_line

HIDDEN = ("exported_at", "exported_by", "report_status", "assay")  # said elsewhere in the text, or not for a terminal


def report_lines(report: AssayReport, classified_now: int | None = None) -> list[str]:
    """Identity, counts per class, the differential or the IDC fraction, then the warnings."""
    lines = [f"{label}: {value}" for name, label, value in report.identity() if value and name not in HIDDEN]
    t, m = report.tally, report.model
    now = "" if classified_now is None else f", {classified_now} classified now"
    lines.append(f"{m.display_name} (v{m.version}): {t.total} images{now}, {t.pending_review} to review, "
                 f"{t.unreadable} unreadable")
    if t.left_out:
        lines.append(f"  left out: {left_out_line(t)}")
    lines += [f"  {c.label:<24} AI {c.ai:>6}   final {c.final:>6}" for c in report.classes]
    if report.blood:
        lines.append(f"  WBC counted {report.wbc}, platelets {report.platelets}")
    for c in report.differential:
        r = c.result
        if r.value is not None:
            lines.append(f"  {c.label:<24} {r.text():>6} {r.unit.symbol} {r.flag}")
    fraction = report.result("idc_fraction")
    if fraction is not None and fraction.value is not None and report.slide is not None:
        lines.append(f"  IDC fraction {fraction.text()}{fraction.unit.symbol} ({report.fraction_detail()})")
        ai = report.ai_fraction
        if ai is not None and ai.value is not None:
            lines.append(f"  (AI only, before review: {ai.text()}{ai.unit.symbol}, "
                         f"{report.slide.ai_idc}/{report.slide.ai_patches})")
    lines += [f"  ! {w}" for w in report.warnings]
    return lines
