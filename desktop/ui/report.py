"""The printable PDF report (Qt's own QTextDocument + QPdfWriter, no extra dependency)."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QSizeF
from PySide6.QtGui import QFont, QImage, QPageLayout, QPageSize, QPdfWriter, QTextDocument

from desktop.core.model import ModelInfo
from desktop.core.record import FolderChanges, SessionRecord, record_lines
from desktop.core.store import Cell
from desktop.core.summary import counts, differential, idc_summary


def _image_tag(image: QImage, width: int = 420) -> str:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return f"<img width={width} src='data:image/png;base64,{bytes(data.toBase64()).decode()}'>"


def report_html(cells: list[Cell], info: ModelInfo, *, record: SessionRecord, changes: FolderChanges | None,
                operator: str, when: str, target: int, heat: QImage | None = None) -> str:
    tally = counts(cells, info)
    m = info.metrics
    e = html.escape
    identity = "<br>".join(f"<b>{e(label)}:</b> {e(value)}" for label, value in record_lines(record, changes) if value)
    title = "SlideTally report" if record.signed else "SlideTally report — PRELIMINARY (not signed off)"
    parts = [
        f"<h2>{e(title)}</h2>",
        f"<p>{identity}<br><b>Printed:</b> {e(when)} by {e(operator)}</p>",
        f"<p><b>Model:</b> {e(info.display_name)} — {e(info.key)} version {e(info.version)}; test accuracy "
        f"{m.get('accuracy', float('nan')):.2%}, macro-F1 {m.get('macro_f1', float('nan')):.3f} on {m.get('n', '?')} "
        "held-out images. The model pre-classifies; every final call is the technician's.</p>",
        f"<p>{tally.total} images; {tally.pending_review} awaiting review; {tally.unreadable} unreadable; "
        f"{tally.unfamiliar_excluded} unfamiliar excluded.</p>",
    ]
    if info.task == "blood-differential":
        diff = differential(cells, info, target=target)
        parts.append(f"<p><b>WBC counted:</b> {diff.wbc} (target {diff.target}); <b>platelets</b> (counted apart): "
                     f"{diff.platelets}; <b>NRBC</b>: "
                     + ("n/a" if diff.nrbc_per_100_wbc is None else f"{diff.nrbc_per_100_wbc:.1f} per 100 WBC") + "</p>")
        rows = "".join(
            f"<tr><td>{e(r.label)}</td><td align=right>{tally.ai[r.key]}</td><td align=right>{r.count}</td>"
            f"<td align=right>{'' if r.percent is None else f'{r.percent:.1f}'}</td>"
            f"<td>{'' if r.interval is None else f'{r.interval[0]:g}–{r.interval[1]:g}'}</td><td><b>{r.flag}</b></td></tr>"
            for r in diff.rows)
        parts.append("<table border=1 cellspacing=0 cellpadding=4><tr><th>Class</th><th>AI count</th><th>Final count</th>"
                     f"<th>% of WBC (NRBC /100 WBC)</th><th>Reference</th><th>Flag</th></tr>{rows}</table>")
        parts += [f"<p>⚠ {e(w)}</p>" for w in diff.warnings]
    else:
        slide = idc_summary(cells, info)
        fraction = "n/a" if slide.fraction is None else f"{100 * slide.fraction:.1f}%"
        parts.append(f"<p><b>IDC fraction:</b> {fraction} ({slide.idc} of {slide.patches} patches)</p>")
        rows = "".join(f"<tr><td>{e(c.label)}</td><td align=right>{tally.ai[c.key]}</td>"
                       f"<td align=right>{tally.final[c.key]}</td></tr>" for c in info.classes)
        parts.append("<table border=1 cellspacing=0 cellpadding=4><tr><th>Class</th><th>AI</th><th>Final</th></tr>"
                     f"{rows}</table>")
        if heat is not None:
            parts.append("<p>Slide map of the final calls (vermilion: IDC; blue: no IDC; yellow: awaiting review):</p>"
                         + _image_tag(heat))
    parts.append("<p style='font-size:8pt'>Reference intervals: see resources/reference_intervals.json; each laboratory "
                 "must use its own validated intervals. For research and laboratory review; not a diagnosis.</p>")
    return "".join(parts)


def write_pdf(path: Path, html_text: str) -> None:
    """Render to a temp file, then rename: no half-written report is ever left behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = QPdfWriter(str(tmp))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter)
    writer.setResolution(150)
    document = QTextDocument()
    # lay out in the printer's resolution, so point sizes come out as points on paper
    document.documentLayout().setPaintDevice(writer)
    document.setDefaultFont(QFont("DejaVu Sans", 10))
    document.setHtml(html_text)
    document.setPageSize(QSizeF(writer.width(), writer.height()))
    document.print_(writer)
    del writer
    if not tmp.exists() or tmp.stat().st_size == 0:
        raise OSError(f"could not write {path}")
    tmp.replace(path)


def write_pdf_headless(path: Path, html_text: str) -> None:
    """The same PDF from a process without a window (the CLI): Qt's offscreen platform."""
    import os

    from PySide6.QtGui import QGuiApplication

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _app = QGuiApplication.instance() or QGuiApplication([])
    write_pdf(path, html_text)
