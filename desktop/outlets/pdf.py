"""The printable PDF report, laid out from an AssayReport with Qt's own QTextDocument + QPdfWriter:
identity, results, warnings, signature lines, a cell gallery per class (or the IDC heat map), and
on every page 'page x of y' and, until sign-off, a PRELIMINARY mark. QtGui only: no widgets, so
the headless CLI prints the same PDF."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QMarginsF, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QTextDocument,
)

from desktop.core.atomic import replaced_atomically
from desktop.core.errors import ExportError
from desktop.core.inference.contract import NRBC_GROUP
from desktop.core.inference.slide import MAP_CELL_PX, call_overlay
from desktop.core.records.integrity import seal_line
from desktop.core.report.assay_report import AssayReport, percent_text
from desktop.core.thumbnails import thumbnail
from desktop.outlets.qimage import to_qimage

THUMB_PX = 72  # gallery thumbnails, in the document's pixels
THUMBS_PER_ROW = 8
DATA_NOTE = "For research and laboratory review; not a diagnosis. The model pre-classifies; every final call is the technician's."


@dataclass
class PdfDocument:
    """What is printed: the HTML body, the images it names (by URL), the footer and whether to mark it PRELIMINARY."""

    html: str
    images: dict[str, QImage] = field(default_factory=dict)
    footer: str = ""
    preliminary: bool = False


def _signature(role: str, name: str, at: str) -> str:
    filled = f"{html.escape(name)} — {html.escape(at)}" if name else "&nbsp;"
    return (f"<td width='50%' style='padding-right:24px'><p style='margin-top:26px'>{filled}</p>"
            f"<hr><p style='font-size:8pt'>{role}: name, date, signature</p></td>")


def _hash(value: str) -> str:
    """A SHA-256 in two halves of 32, small and monospaced: never one character wrapped onto a line of its own."""
    return (f"<span style='font-family:monospace;font-size:7pt'>{html.escape(value[:32])}<br>"
            f"{html.escape(value[32:])}</span>")


def report_document(report: AssayReport, folder: Path | None = None, heat: QImage | None = None) -> PdfDocument:
    """The PDF's content from the report; thumbnails are read from `folder` (the session's source folder)."""
    e = html.escape
    r, m = report.record, report.model
    images: dict[str, QImage] = {}
    title = ("SlideTally report — CORRECTED (replaces the report signed before the reopen)" if report.corrected
             else "SlideTally report" if report.final else "SlideTally report — PRELIMINARY (not signed off)")
    skip = {"exported_at", "exported_by", "report_status"}
    identity = "".join(f"<tr><td><b>{e(label)}</b></td><td>{_hash(value) if name.endswith('sha256') else e(value)}</td></tr>"
                       for name, label, value in report.identity() if value and name not in skip)
    accuracy = percent_text(m.accuracy)
    macro = "n/a" if m.macro_f1 is None else f"{m.macro_f1:.3f}"
    t = report.tally
    parts = [
        f"<h2>{e(title)}</h2>",
        f"<table cellspacing=0 cellpadding=2>{identity}<tr><td><b>Printed</b></td>"
        f"<td>{e(report.generated_at)} by {e(report.generated_by)}</td></tr></table>",
        f"<p><b>Model:</b> {e(m.display_name)} — {e(m.key)} version {e(m.version)}; {e(m.accuracy_label)} {accuracy}, "
        f"macro-F1 {macro} on {m.n_test} "
        f"{'verified cells of this lab' if m.accuracy_label != 'test accuracy' else 'held-out images'}.</p>",
        f"<p>{t.total} images; {t.pending_review} awaiting review; {t.unreadable} unreadable; "
        f"{t.unfamiliar_excluded} unfamiliar excluded.</p>",
    ]
    if report.blood:
        nrbc = next((c.result for c in report.differential if c.group == NRBC_GROUP), None)
        parts.append(f"<p><b>WBC counted:</b> {report.wbc} (target {report.target}); <b>platelets</b> (counted apart): "
                     f"{report.platelets}" + (f"; <b>NRBC</b>: {nrbc.text() or 'n/a'} {nrbc.unit.symbol}" if nrbc else "")
                     + "</p>")
        rows = "".join(
            f"<tr><td>{e(c.label)}</td><td align=right>{c.ai}</td><td align=right>{c.final}</td>"
            f"<td align=right>{c.result.text() if c.result else ''}</td><td>{e(c.result.unit.symbol) if c.result else ''}</td>"
            f"<td>{c.result.ci_text() if c.result else ''}</td>"
            f"<td>{'' if not c.result or c.result.interval is None else f'{c.result.interval[0]:g}–{c.result.interval[1]:g}'}"
            f"</td><td><b>{c.result.flag if c.result else ''}</b></td>"
            f"<td style='font-size:8pt'>{e(c.result.code.code) if c.result and c.result.code else ''}</td></tr>"
            for c in report.classes)
        parts.append("<table border=1 cellspacing=0 cellpadding=4><tr><th>Class</th><th>AI count</th><th>Final count</th>"
                     f"<th>Value</th><th>Unit</th><th>95% CI</th><th>Reference</th><th>Flag</th><th>Code</th></tr>{rows}</table>")
        parts.append(f"<p style='font-size:8pt'>{e(report.precision)}</p>")
    else:
        fraction = report.result("idc_fraction")
        slide = report.slide
        shown = "n/a" if fraction is None or fraction.value is None else f"{fraction.text()}{fraction.unit.symbol}"
        ai = report.ai_fraction
        ai_text = (f"; AI only, before review: {ai.text()}{ai.unit.symbol} ({slide.ai_idc} of {slide.ai_patches})"
                   if ai is not None and ai.value is not None and slide else "")
        detail = report.fraction_detail()
        parts.append(f"<p><b>IDC fraction:</b> {shown}" + (f" ({e(detail)})" if detail else "") + f"{ai_text}</p>")
        rows = "".join(f"<tr><td>{e(c.label)}</td><td align=right>{c.ai}</td><td align=right>{c.final}</td></tr>"
                       for c in report.classes)
        parts.append("<table border=1 cellspacing=0 cellpadding=4><tr><th>Class</th><th>AI</th><th>Final</th></tr>"
                     f"{rows}</table>")
        if heat is not None:
            images["slidetally://heat"] = heat
            parts.append("<p>Slide map of the final calls (vermilion: IDC; blue: no IDC; yellow: awaiting review):</p>"
                         "<img width=420 src='slidetally://heat'>")
    parts += [f"<p>⚠ {e(w)}</p>" for w in report.warnings]
    parts.append(f"<p style='font-size:8pt'><b>Reference:</b> {e(report.reference_source)} {e(DATA_NOTE)}</p>")
    parts.append("<table width='100%' style='margin-top:12px'><tr>"
                 + _signature("Signed off", r.signed_by if r.signed else "", r.signed_at if r.signed else "")
                 + _signature("Verified", r.verified_by, r.verified_at) + "</tr></table>")
    if r.seal:
        parts.append(f"<p style='font-size:7pt'>{e(seal_line(r.seal))}</p>")
    parts.append(_gallery_html(report, folder, images))
    footer = (f"{r.specimen_id or '(no specimen ID)'} · {m.key} v{m.version} · SlideTally {report.app_version} · "
              f"{report.status}" + (f" · seal {r.seal[:16]}" if r.seal else ""))
    return PdfDocument("".join(parts), images, footer, preliminary=not report.final)


def _gallery_html(report: AssayReport, folder: Path | None, images: dict[str, QImage]) -> str:
    """A page of thumbnails per class: the final calls, most confident first."""
    if folder is None or not any(g.files for g in report.gallery):
        return ""
    parts = ["<h3 style='page-break-before: always'>Cell gallery: final calls per class</h3>"]
    for g in report.gallery:
        if not g.files:
            continue
        shown = f"; the {len(g.files)} most confident shown" if len(g.files) < g.count else ""
        parts.append(f"<p><b>{html.escape(g.label)}</b> — {g.count} final call(s){shown}</p><table cellspacing=2><tr>")
        for i, file in enumerate(g.files):
            url = f"slidetally://thumb/{g.key}/{i}"
            images[url] = to_qimage(thumbnail(folder, file, patch_size=report.model.patch_size, size=THUMB_PX,
                                                  mpp=report.model.mpp))
            if i and i % THUMBS_PER_ROW == 0:
                parts.append("</tr><tr>")
            parts.append(f"<td><img width={THUMB_PX} height={THUMB_PX} src='{url}'></td>")
        parts.append("</tr></table>")
    return "".join(parts)


def write_pdf(path: Path, content: PdfDocument | str) -> None:
    """Render page by page (footer 'page x of y', PRELIMINARY mark) to a temp file, then rename:
    no half-written report is ever left behind."""
    with replaced_atomically(Path(path)) as tmp:
        render_pdf(tmp, content)


def _render(doc: PdfDocument, tmp: Path) -> None:
    writer = QPdfWriter(str(tmp))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter)
    writer.setResolution(150)
    document = QTextDocument()
    document.documentLayout().setPaintDevice(writer)  # point sizes come out as points on paper
    document.setDefaultFont(QFont("DejaVu Sans", 10))
    for url, image in doc.images.items():
        document.addResource(QTextDocument.ResourceType.ImageResource, QUrl(url), image)
    document.setHtml(doc.html)
    width, height = writer.width(), writer.height()
    footer_h = int(writer.resolution() * 0.35)
    body = QSizeF(width, height - footer_h)
    document.setPageSize(body)
    pages = document.pageCount()
    painter = QPainter(writer)
    try:
        for page in range(pages):
            if page:
                writer.newPage()
            if doc.preliminary:
                _preliminary_mark(painter, width, height)
            painter.save()
            painter.translate(0, -page * body.height())
            document.drawContents(painter, QRectF(0, page * body.height(), body.width(), body.height()))
            painter.restore()
            painter.setFont(QFont("DejaVu Sans", 8))
            painter.setPen(QColor("#444"))
            band = QRectF(0, height - footer_h, width, footer_h)
            painter.drawText(band, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, doc.footer)
            painter.drawText(band, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom, f"page {page + 1} of {pages}")
    finally:
        painter.end()
    del writer  # closes the file


def _preliminary_mark(painter: QPainter, width: int, height: int) -> None:
    painter.save()
    painter.setPen(QColor(220, 38, 38, 60))
    painter.setFont(QFont("DejaVu Sans", 64, QFont.Weight.Bold))
    painter.translate(width / 2, height / 2)
    painter.rotate(-45)
    painter.drawText(QRectF(-width, -height / 8, 2 * width, height / 4), Qt.AlignmentFlag.AlignCenter, "PRELIMINARY")
    painter.restore()


def render_pdf(tmp: Path, content: PdfDocument | str) -> None:
    """Render into `tmp` (a staged output) and check the file is whole: a full disk can leave Qt's
    writer with a truncated file and no error."""
    _render(content if isinstance(content, PdfDocument) else PdfDocument(content), Path(tmp))
    with open(tmp, "rb") as handle:
        handle.seek(max(0, Path(tmp).stat().st_size - 64))
        if b"%%EOF" not in handle.read():
            raise ExportError(f"The PDF could not be written whole (is the disk full?): {Path(tmp).name}")


def headless_app() -> QGuiApplication:
    """The Qt application a process without a window (the CLI) renders PDFs with: offscreen."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return QGuiApplication.instance() or QGuiApplication([])


def write_pdf_headless(path: Path, content: PdfDocument | str) -> None:
    """The same PDF from a process without a window (the CLI)."""
    _app = headless_app()
    write_pdf(path, content)


def heat_image(report: AssayReport, mosaic: np.ndarray | None = None) -> QImage | None:
    """The IDC slide map of the report's final calls, or None (blood, nothing classified)."""
    if report.slide is None or not report.slide.calls.size:
        return None
    return to_qimage(call_overlay(report.slide.calls, mosaic, MAP_CELL_PX))
