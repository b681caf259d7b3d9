"""The live summary: counts, differential with flags, review progress, bar chart, heat map."""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QFormLayout, QLabel, QProgressBar, QSpinBox, QVBoxLayout, QWidget

from desktop.core.inference.slide import MAP_CELL_PX
from desktop.core.policy import lab_policy
from desktop.core.records.lifecycle import TARGET_RANGE
from desktop.core.report.assay_report import AssayReport
from desktop.core.report.summary import picture_only
from desktop.ui.dialogs import reading_view
from desktop.ui.heatmap import SlideMap


class BarChart(QWidget):
    """Final count per class as horizontal bars."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, int]] = []
        self.setMinimumHeight(150)

    def set_rows(self, rows: list[tuple[str, int]]) -> None:
        self.rows = rows
        self.setMinimumHeight(18 * len(rows) + 10)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        top = max((n for _, n in self.rows), default=0) or 1
        label_w, y = 150, 4
        width = max(10, self.width() - label_w - 50)
        for label, n in self.rows:
            painter.setPen(QColor("#333"))
            painter.drawText(QRectF(0, y, label_w - 6, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
            painter.fillRect(QRectF(label_w, y + 2, width * n / top, 12), QColor("#3b82f6"))
            painter.drawText(QRectF(label_w + width * n / top + 4, y, 46, 16), Qt.AlignmentFlag.AlignVCenter, str(n))
            y += 18
        painter.end()


class SummaryPanel(QWidget):
    target_changed = Signal(int)
    mosaic_changed = Signal()  # the slide's picture under the map: the report is shown again over it

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.target = QSpinBox()
        self.target.setRange(*TARGET_RANGE)
        self.target.setValue(lab_policy().default_target_wbc)
        self.target.setSuffix(" WBC")
        self.target.setToolTip("White cells to count for this specimen (kept with its session; fixed at sign-off)")
        self.target.setKeyboardTracking(False)  # one change when the number is entered, not one per digit
        self.target.valueChanged.connect(self.target_changed)
        self.target_row = QLabel("Target count")
        form.addRow(self.target_row, self.target)
        self.review_bar = QProgressBar()
        self.review_bar.setFormat("Review: %v of %m confirmed")
        form.addRow("Review", self.review_bar)
        layout.addLayout(form)
        self.text = reading_view()
        layout.addWidget(self.text, 3)
        self.chart = BarChart()
        layout.addWidget(self.chart)
        self.heat = SlideMap()
        self.heat.setMinimumHeight(160)
        self.heat.setVisible(False)
        layout.addWidget(self.heat, 3)
        self._mosaic: np.ndarray | None = None

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        """On a short screen the counts table matters more than the bar chart: the chart gives way."""
        super().resizeEvent(event)
        self.chart.setVisible(self.height() >= 560)

    @property
    def mosaic(self) -> np.ndarray | None:
        """The slide's mosaic under the map (patch models), once built."""
        return self._mosaic

    def set_mosaic(self, mosaic: np.ndarray | None) -> None:
        self._mosaic = mosaic
        self.mosaic_changed.emit()

    def show_report(self, report: AssayReport | None) -> None:
        """Lay out the session's report; every figure is the report's own."""
        if report is None:
            self.text.setHtml("<p>Open a folder of images (Ctrl+O) or drop it on the window.</p>")
            self.chart.set_rows([])
            self.target.setVisible(False)  # a target belongs to a blood session, not to an empty window
            self.target_row.setVisible(False)
            return
        blood = report.blood
        self.target.setVisible(blood)
        self.target_row.setVisible(blood)
        self.show_target(report.record.target, editable=not report.record.signed)
        tally = report.tally
        self.review_bar.setMaximum(max(tally.review_total, 1))
        self.review_bar.setValue(tally.confirmed_review if tally.review_total else 1)
        self.review_bar.setFormat("Review: %v of %m confirmed" if tally.review_total else "Nothing to review")
        self.chart.set_rows([(c.label, c.final) for c in report.classes])
        status = report.record.status_line()
        colour = "#166534" if report.final else "#b45309"
        parts = [f"<h3>{html.escape(report.model.display_name)}</h3>",
                 f"<p style='color:{colour}'><b>{html.escape(status)}</b></p>",
                 f"<p>{tally.total} images · {tally.pending_review} awaiting review · {tally.unreadable} unreadable</p>"]
        if blood:
            parts.append(self._differential_html(report))
            self.heat.setVisible(False)
        else:
            parts.append(self._slide_html(report))
        parts += [f"<p style='color:#b45309'>⚠ {html.escape(w)}</p>" for w in report.warnings]
        self.text.setHtml("".join(parts))

    def show_target(self, value: int, editable: bool) -> None:
        """The session's target count, as stored (no change signal: only the technician changes it)."""
        self.target.blockSignals(True)
        self.target.setValue(value)
        self.target.blockSignals(False)
        self.target.setEnabled(editable)

    def _differential_html(self, report: AssayReport) -> str:
        """Five columns that fit a 1366x768 screen at 150 %: the 95% interval under the value, the flag beside the
        reference interval, no line break inside a number."""
        rows = ["<table cellspacing=0 cellpadding=2>",
                "<tr><th align=left>Class</th><th align=right>AI</th><th align=right>Final</th>"
                "<th align=right>Value<br><small>95% CI</small></th><th align=left>Ref.</th></tr>"]
        for c in report.classes:
            r = c.result
            value, under = "", ""
            if r is not None and r.value is not None:  # "19.2 %"; a longer unit ("/100 WBC") goes on the second line
                short = len(r.unit.symbol) <= 1
                value = f"{r.text()}&nbsp;{html.escape(r.unit.symbol)}" if short else r.text()
                under = "" if short else html.escape(r.unit.symbol)
            if r is not None and r.ci is not None:
                under = r.ci_text()
            if under:
                value += f"<br><small style='color:#555'>{under}</small>"
            ref = "" if r is None or r.interval is None else f"{r.interval[0]:g}–{r.interval[1]:g}"
            if r is not None and r.flag:
                ref += f"&nbsp;<b style='color:#b00020'>{r.flag}</b>"
            rows.append(f"<tr><td>{html.escape(c.label)}</td><td align=right>{c.ai}</td><td align=right>{c.final}</td>"
                        f"<td align=right style='white-space:nowrap'>{value}</td>"
                        f"<td style='white-space:nowrap; padding-left:5px'>{ref}</td></tr>")
        rows.append("</table>")
        rows.append(f"<p style='color:#555;font-size:9pt'>{html.escape(report.precision)}</p>")
        colour = "#b45309" if (report.wbc or 0) < (report.target or 0) else "#166534"
        head = (f"<p><b style='color:{colour}'>WBC counted: {report.wbc} / {report.target}</b> · platelets (apart): "
                f"{report.platelets}</p>")
        return head + "".join(rows)

    def _slide_html(self, report: AssayReport) -> str:
        slide, fraction = report.slide, report.result("idc_fraction")
        if slide is None or fraction is None or fraction.value is None:
            if slide is not None and not slide.calls.size and self._mosaic is not None:  # a whole slide, no call yet
                self.heat.setVisible(True)
                self.heat.show_slide(picture_only(slide, self._mosaic, MAP_CELL_PX), self._mosaic)
            else:
                self.heat.setVisible(False)
            return "<p>No patches classified yet.</p>"
        text = (f"<p style='font-size:15pt'><b>IDC fraction: {fraction.text()}{fraction.unit.symbol}</b></p>"
                f"<p>{html.escape(report.fraction_detail())}.</p>")
        ai = report.ai_fraction
        if ai is not None and ai.value is not None and ai.value != fraction.value:
            text += f"<p style='color:#555'>AI only, before review: {ai.text()}{ai.unit.symbol}</p>"
        if slide.calls.size:
            self.heat.setVisible(True)
            self.heat.show_slide(slide, self._mosaic)
        return text
