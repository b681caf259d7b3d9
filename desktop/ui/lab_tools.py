"""Tools → Verification: a thin dialog over the core's verification report (Tools → Adapt to this
lab is `adapt_dialog.py`)."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QDate
from PySide6.QtWidgets import (
    QCheckBox,
    QDateEdit,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from desktop.core.atomic import write_atomically
from desktop.core.errors import ExportError, SlideTallyError
from desktop.core.inference.model import Model
from desktop.core.lab.site_cells import signed_sessions
from desktop.core.lab.verification import build_report, report_html, report_rows
from desktop.outlets.csv import render_csv
from desktop.ui.busy import run_busy
from desktop.ui.dialogs import fit_to_screen, reading_view


class VerificationDialog(QDialog):
    def __init__(self, parent, model: Model, data_root: Path) -> None:
        super().__init__(parent)
        self.model, self.data_root, self.report = model, data_root, None
        self.setWindowTitle(f"Verification — {model.info.display_name}")
        self.since_on = QCheckBox("Only sessions signed off since")
        self.since = QDateEdit(QDate.currentDate().addMonths(-1))
        self.since.setCalendarPopup(True)
        self.since.setMaximumDate(QDate.currentDate())  # a future date has no sessions: not offered
        self.since.setDisplayFormat("yyyy-MM-dd")
        self.since.setEnabled(False)
        self.since_on.toggled.connect(self.since.setEnabled)
        self.since_on.toggled.connect(self.build)
        self.since.dateChanged.connect(self.build)
        self.text = reading_view()
        self.pdf_button = QPushButton("Export PDF…")
        self.pdf_button.clicked.connect(self.export_pdf)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self.export_csv)
        top = QHBoxLayout()
        top.addWidget(self.since_on)
        top.addWidget(self.since)
        top.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.csv_button)
        bottom.addWidget(self.pdf_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.text, 1)
        layout.addLayout(bottom)
        fit_to_screen(self, 900, 760)
        self.build()

    def build(self) -> None:
        try:
            since = self.since.date().toString("yyyy-MM-dd") if self.since_on.isChecked() else None
            sessions = run_busy(self, "Reading the signed-off sessions …",
                                lambda: signed_sessions(self.data_root, self.model.info, since))
        except SlideTallyError as exc:
            self.text.setHtml(f"<p style='color:#b00020'>{html.escape(str(exc))}</p>")
            return
        if not sessions:
            self.report = None
            when = " in this period" if self.since_on.isChecked() else " yet"
            self.text.setHtml(f"<p>No signed-off sessions of this model{when}. Every session you sign off becomes "
                              "part of this lab's verification study.</p>")
        else:
            self.report = build_report(sessions, self.model.info)
            self.text.setHtml(report_html(self.report))
        if sessions.altered:  # never silently: the lab must know a record was left out, and why
            self.text.append(f"<p style='color:#b00020'>{html.escape(sessions.altered_note())}.</p>")
        self.pdf_button.setEnabled(self.report is not None)
        self.csv_button.setEnabled(self.report is not None)

    def write_pdf(self, path: Path) -> None:
        from desktop.outlets.pdf import write_pdf

        write_pdf(path, report_html(self.report))

    def write_csv(self, path: Path) -> None:
        write_atomically(path, render_csv(report_rows(self.report)))

    def export_pdf(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Verification report", "verification.pdf", "PDF files (*.pdf)")
        if path:
            self._guard(lambda: self.write_pdf(Path(path)))

    def export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Verification tables", "verification.csv", "CSV files (*.csv)")
        if path:
            self._guard(lambda: self.write_csv(Path(path)))

    def _guard(self, fn) -> None:
        try:
            fn()
        except (OSError, ExportError) as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
