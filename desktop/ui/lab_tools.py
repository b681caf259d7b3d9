"""Tools → Verification and Tools → Adapt to this lab: thin dialogs over the core's
verification report and site adaptation."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QThread
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTextBrowser,
    QVBoxLayout,
)

from desktop.core.atomic import write_atomically
from desktop.core.errors import ExportError, SlideTallyError
from desktop.core.inference.model import Model
from desktop.core.lab.site_cells import cells_from_folder, cells_from_sessions, signed_sessions
from desktop.core.lab.site_model import PreparedAdaptation, prepare_adaptation, write_site_model
from desktop.core.lab.verification import build_report, report_html, report_rows
from desktop.outlets.csv import render_csv
from desktop.ui.worker import TaskWorker, start_worker


class VerificationDialog(QDialog):
    def __init__(self, parent, model: Model, data_root: Path):
        super().__init__(parent)
        self.model, self.data_root, self.report = model, data_root, None
        self.setWindowTitle(f"Verification — {model.info.display_name}")
        self.since = QLineEdit()
        self.since.setPlaceholderText("all sessions (or a date: 2026-11-01)")
        refresh = QPushButton("Update")
        refresh.clicked.connect(self.build)
        self.text = QTextBrowser()
        self.pdf_button = QPushButton("Export PDF…")
        self.pdf_button.clicked.connect(self.export_pdf)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.clicked.connect(self.export_csv)
        top = QHBoxLayout()
        top.addWidget(QLabel("Signed off since:"))
        top.addWidget(self.since, 1)
        top.addWidget(refresh)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.csv_button)
        bottom.addWidget(self.pdf_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.text, 1)
        layout.addLayout(bottom)
        self.resize(900, 760)
        self.build()

    def build(self) -> None:
        try:
            sessions = signed_sessions(self.data_root, self.model.info, self.since.text().strip() or None)
        except SlideTallyError as exc:
            self.text.setHtml(f"<p style='color:#b00020'>{html.escape(str(exc))}</p>")
            return
        if not sessions:
            self.report = None
            self.text.setHtml("<p>No signed-off sessions of this model yet. Every session you sign off becomes part "
                              "of this lab's verification study.</p>")
        else:
            self.report = build_report(sessions, self.model.info)
            self.text.setHtml(report_html(self.report))
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


class AdaptDialog(QDialog):
    """Fit on the lab's verified cells, show the cross-validated figures, install on approval."""

    def __init__(self, parent, model: Model, data_root: Path, models_folder: Path, on_installed):
        super().__init__(parent)
        self.model, self.data_root, self.models_folder, self.on_installed = model, data_root, models_folder, on_installed
        self.prepared: PreparedAdaptation | None = None
        self.worker: TaskWorker | None = None
        self.thread: QThread | None = None
        self.setWindowTitle(f"Adapt to this lab — {model.info.display_name}")
        self.from_sessions = QRadioButton("This lab's signed-off sessions of this model")
        self.from_folder = QRadioButton("A labelled folder (one sub-folder per class key)…")
        self.from_sessions.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.from_sessions)
        group.addButton(self.from_folder)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("folder with " + ", ".join(model.info.class_keys) + " sub-folders")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.site = QLineEdit()
        self.site.setPlaceholderText("the lab's short name, e.g. north-lab")
        self.approver = QLineEdit()
        self.approver.setPlaceholderText("lab director's name: required to install")
        self.fit_button = QPushButton("Fit and cross-validate")
        self.fit_button.clicked.connect(self.fit)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.text = QTextBrowser()
        self.text.setHtml("<p>The base model stays as it is. The site model is a new assay in the list; switching back "
                          "is choosing the base model there. Only cross-validated figures are shown: every cell is "
                          "judged by a model fitted without its session.</p>")
        self.install_button = QPushButton("Approve and install")
        self.install_button.setEnabled(False)
        self.install_button.clicked.connect(self.install)
        form = QFormLayout()
        form.addRow(self.from_sessions)
        row = QHBoxLayout()
        row.addWidget(self.from_folder)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form.addRow(row)
        form.addRow("Site name:", self.site)
        form.addRow("Approved by:", self.approver)
        buttons = QHBoxLayout()
        buttons.addWidget(self.fit_button)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.install_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.text, 1)
        self.resize(820, 640)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Labelled folder of verified cells")
        if folder:
            self.folder.setText(folder)
            self.from_folder.setChecked(True)

    def _cells(self):
        info = self.model.info
        if self.from_folder.isChecked():
            folder = Path(self.folder.text().strip())
            return cells_from_folder(folder, info), {"verified_folder": str(folder)}
        sessions = signed_sessions(self.data_root, info)
        return cells_from_sessions(sessions, info), {"sessions": [s.name for s in sessions]}

    def fit(self) -> None:
        try:
            cells, source = self._cells()
        except SlideTallyError as exc:
            self.text.setHtml(f"<p style='color:#b00020'>{html.escape(str(exc))}</p>")
            return
        self.fit_button.setEnabled(False)
        self.install_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.worker = TaskWorker(lambda progress, cancel: prepare_adaptation(self.model, cells, source, progress, cancel))
        self.worker.progress.connect(self._progress)
        self.worker.finished.connect(self._fitted)
        self.worker.failed.connect(self._failed)
        self.thread = start_worker(self.worker)

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"{'Reading cells' if stage == 'features' else 'Cross-validating'} %v/%m")

    def _failed(self, message: str) -> None:
        self._done()
        self.text.setHtml(f"<p style='color:#b00020'><b>Not adapted:</b> {html.escape(message)}</p>")

    def _done(self) -> None:
        self.progress.setVisible(False)
        self.fit_button.setEnabled(True)
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
            self.thread = None

    def _fitted(self, prepared: PreparedAdaptation) -> None:
        self._done()
        self.prepared = prepared
        self.text.setHtml(adaptation_html(prepared))
        self.install_button.setEnabled(True)

    def install(self) -> None:
        if self.prepared is None:
            return
        try:
            path = write_site_model(self.model, self.prepared, self.site.text(), self.approver.text(), self.models_folder)
        except Exception as exc:  # noqa: BLE001 - the reason is shown, nothing is installed
            QMessageBox.warning(self, "Not installed", str(exc))
            return
        self.installed = path
        self.on_installed(path)
        self.accept()

    def reject(self) -> None:
        if self.worker is not None:
            self.worker.cancel.set()
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
        super().reject()


def adaptation_html(prepared: PreparedAdaptation) -> str:
    a = prepared.adaptation
    e = html.escape

    def row(name, f):
        return (f"<tr><td>{name}</td><td align=right>{f.accuracy:.1%}</td><td align=right>{f.balanced_accuracy:.1%}</td>"
                f"<td align=right>{f.accepted_share:.1%}</td><td align=right>{f.accepted_accuracy:.1%}</td></tr>")

    counts = ", ".join(f"{e(k)} {n}" for k, n in a.cells_per_class.items())
    parts = ["<h3>Cross-validated on this lab's cells</h3>",
             f"<p>{e(a.folds)}; {a.after.n} cells ({counts}).</p>",
             "<table border=1 cellspacing=0 cellpadding=4><tr><th></th><th>Accuracy</th><th>Balanced accuracy</th>"
             "<th>Accepted (not Review)</th><th>Right among accepted</th></tr>",
             row("Base model", a.before), row("Adapted", a.after), "</table>",
             f"<p>Review threshold {a.review_threshold:.2f}; Unfamiliar threshold refitted on this lab's cells "
             f"({a.ood_threshold:.3g}).</p>"]
    if a.kept_from_base:
        parts.append(f"<p style='color:#b45309'>Fewer than 10 verified cells: {e(', '.join(a.kept_from_base))}. "
                     "These classes are held close to the base model's weights; verify more of them.</p>")
    parts += [f"<p style='color:#b45309'>{e(n)}</p>" for n in a.notes]
    if prepared.problems:
        parts.append(f"<p>{len(prepared.problems)} cell(s) could not be read and were left out.</p>")
    parts.append("<p>Check the figures, name who approves, then <b>Approve and install</b>.</p>")
    return "".join(parts)
