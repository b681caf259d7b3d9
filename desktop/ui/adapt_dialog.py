"""Tools → Adapt to this lab: choose the cells and the method, watch it fit (progress, time left,
Cancel), read the site cross-validated figures, and install on a lab director's approval.

Whole network: `slidetally-train adapt` as a separate process (the app never imports
TensorFlow); quick: a new head on the base model's features, in-process (weaker)."""

from __future__ import annotations

import html
import logging
import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import QProcess, QThread
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
    QVBoxLayout,
)

from desktop.core.errors import SlideTallyError
from desktop.core.inference.model import Model, find_model_files
from desktop.core.lab.deep_runner import deep_adapt_arguments, parse_trainer_line, trainer_command
from desktop.core.lab.site_cells import cells_from_folder, cells_from_sessions, signed_sessions, who_signed
from desktop.core.lab.site_guard import loss_text
from desktop.core.lab.site_install import install_site_model
from desktop.core.lab.site_model import PreparedAdaptation, next_number, prepare_adaptation, slug, write_site_model
from desktop.core.resources import resource
from desktop.ui.dialogs import fit_to_screen, reading_view
from desktop.ui.worker import TaskWorker, start_worker

log = logging.getLogger(__name__)
KEYS = ("accuracy", "balanced_accuracy", "accepted_share", "accepted_accuracy")


class AdaptDialog(QDialog):
    """Fit on the lab's verified cells, show the site cross-validated figures, install on approval."""

    def __init__(self, parent, model: Model, data_root: Path, models_folder: Path, on_installed,
                 allow_same_login: bool = False) -> None:
        super().__init__(parent)
        self.model, self.data_root, self.models_folder, self.on_installed = model, data_root, models_folder, on_installed
        self.allow_same_login = allow_same_login  # the lab policy's rule (desktop/core/policy.py)
        self.prepared: PreparedAdaptation | None = None
        self.candidate: Path | None = None
        self.report: dict | None = None
        self.worker: TaskWorker | None = None
        self.thread: QThread | None = None
        self.process: QProcess | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="slidetally-adapt-"))
        self._trainer = trainer_command()
        self.setWindowTitle(f"Adapt to this lab — {model.info.display_name}")
        browse = self._source_choice()
        self._method_choice()
        self._name_fields()
        self._action_widgets()
        self._lay_out(browse)
        fit_to_screen(self, 860, 680)

    def _source_choice(self) -> QPushButton:
        """The signed-off sessions or a labelled folder; returns the folder's Browse button."""
        self.from_sessions = QRadioButton("This lab's signed-off sessions of this model")
        self.from_folder = QRadioButton("A labelled folder…")
        self.from_sessions.setChecked(True)
        sources = QButtonGroup(self)
        sources.addButton(self.from_sessions)
        sources.addButton(self.from_folder)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("<specimen>/<class key>/ or <class key>/ sub-folders")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        return browse

    def _method_choice(self) -> None:
        """Whole network (when the trainer is installed, the default) or quick."""
        self.deep = QRadioButton("Whole network: every layer fine-tuned (minutes; the stronger method with many cells)")
        self.quick = QRadioButton("Quick: a new head on the base model's features (seconds; can win with few cells)")
        self.deep.setToolTip("Moves every layer to this lab's look. With many verified cells it is usually the better "
                             "one; with few (about 50) it can be worse. Compare the figures before you install.")
        self.quick.setToolTip("Refits only the last layer on the base model's features. Fast, steadier with few cells, "
                              "but the features themselves cannot move.")
        methods = QButtonGroup(self)
        methods.addButton(self.deep)
        methods.addButton(self.quick)
        self.deep.setEnabled(self._trainer is not None)
        if self._trainer is None:
            self.deep.setToolTip("The trainer (slidetally-train) is not installed on this computer.")
            self.quick.setChecked(True)
        else:
            self.deep.setChecked(True)

    def _name_fields(self) -> None:
        """The site's name, the approver, and the reason to accept a loss (shown only when asked)."""
        self.site = QLineEdit()
        self.site.setPlaceholderText("the lab's short name, e.g. north-lab")
        self.approver = QLineEdit()
        self.approver.setPlaceholderText("lab director's name (not one who signed the cells): required to install")
        self.override = QLineEdit()
        self.override.setPlaceholderText("why this model should be installed although it is worse")
        self.override_label = QLabel("Accept the loss because:")
        self.override.setVisible(False)
        self.override_label.setVisible(False)

    def _action_widgets(self) -> None:
        """Fit, Cancel, the progress bar, the figures' text and Approve and install."""
        self.fit_button = QPushButton("Fit and cross-validate")
        self.fit_button.setDefault(True)
        self.fit_button.clicked.connect(self.fit)
        self.cancel_button = QPushButton("Cancel fitting")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_fit)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.text = reading_view()
        self.text.setHtml("<p>The base model stays as it is. The site model is a new assay in the list; switching back "
                          "is choosing the base model there. Every figure shown is <b>site cross-validated</b>: each "
                          "cell is judged by a model fitted without its specimen.</p>")
        self.install_button = QPushButton("Approve and install")
        self.install_button.setEnabled(False)
        self.install_button.clicked.connect(self.install)

    def _lay_out(self, browse: QPushButton) -> None:
        form = QFormLayout()
        form.addRow(self.from_sessions)
        row = QHBoxLayout()
        row.addWidget(self.from_folder)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form.addRow(row)
        form.addRow(self.deep)
        form.addRow(self.quick)
        form.addRow("Site name:", self.site)
        form.addRow("Approved by:", self.approver)
        form.addRow(self.override_label, self.override)
        buttons = QHBoxLayout()
        buttons.addWidget(self.fit_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.install_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.text, 1)

    # --- choosing ---------------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Labelled folder of verified cells")
        if folder:
            self.folder.setText(folder)
            self.from_folder.setChecked(True)

    def _error(self, message: str) -> None:
        self.text.setHtml(f"<p style='color:#b00020'><b>Not adapted:</b> {html.escape(message)}</p>")

    def fit(self) -> None:
        if not slug_or_none(self.site.text()):
            self._error("Give the site a name (letters or digits) before fitting.")
            return
        self.candidate, self.prepared, self.report = None, None, None
        self.text.setHtml("<p>Fitting … the figures of this fit appear here when it is done.</p>")  # never the last fit's
        self.install_button.setEnabled(False)
        self.fit_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        if self.deep.isChecked():
            self._fit_deep()
        else:
            self._fit_quick()

    # --- whole network: the trainer as a process --------------------------------------------
    def _fit_deep(self) -> None:
        folder = Path(self.folder.text().strip()) if self.from_folder.isChecked() else None
        target = self._scratch / f"candidate-{slug(self.site.text())}.onnx"
        target.unlink(missing_ok=True)
        args = deep_adapt_arguments(self.model.info.path, slug(self.site.text()), target, self.models_folder,
                                    verified=folder, sessions=None if folder else self.data_root)
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        self.process.readyReadStandardOutput.connect(self._read_trainer)
        self.process.finished.connect(self._trainer_finished)
        self._stderr = ""
        self.process.readyReadStandardError.connect(self._read_stderr)
        self.cancel_button.setVisible(True)
        self.progress.setRange(0, 1000)
        self.progress.setFormat("Starting the trainer…")
        self.process.start(self._trainer[0], [*self._trainer[1:], *args])

    def _read_stderr(self) -> None:
        self._stderr = (self._stderr + bytes(self.process.readAllStandardError()).decode("utf-8", "replace"))[-4000:]

    def _read_trainer(self) -> None:
        while self.process is not None and self.process.canReadLine():
            line = parse_trainer_line(bytes(self.process.readLine()).decode("utf-8", "replace"))
            if line is None:
                continue
            if line.done:
                self.candidate, self.report = Path(line.done), line.report
                continue
            left = f" — about {format_seconds(line.eta_s)} left" if line.eta_s else ""
            self.progress.setValue(int(line.fraction * 1000))
            self.progress.setFormat(f"{line.stage.capitalize()} {line.fraction:.0%}{left}")

    def _trainer_finished(self, code: int, _status) -> None:
        self._read_trainer()
        self._done()
        if code == 0 and self.candidate is not None and self.report is not None:
            self.text.setHtml(report_html(self.report, "Whole network (every layer fine-tuned)"))
            self._offer_install(self.report["before"], self.report["after"])
        elif code == 130 or self._cancelled:
            self.text.setHtml("<p>Cancelled. Nothing was written.</p>")
        else:
            last = [s for s in self._stderr.splitlines() if s.strip()]
            message = last[-1] if last else f"the trainer stopped (exit {code})"
            log.warning("deep adaptation failed (exit %s): %s", code, self._stderr)
            self._error(message.removeprefix("slidetally-train adapt: "))

    # --- quick: a head on frozen features ---------------------------------------------------
    def _fit_quick(self) -> None:
        try:
            cells, source = self._cells()
        except (SlideTallyError, ValueError) as exc:
            self._done()
            self._error(str(exc))
            return
        self.worker = TaskWorker(lambda progress, cancel: prepare_adaptation(self.model, cells, source, progress, cancel))
        self.worker.progress.connect(self._quick_progress)
        self.worker.finished.connect(self._quick_fitted)
        self.worker.failed.connect(lambda message: (self._done(), self._error(message)))
        self.cancel_button.setVisible(True)
        self.thread = start_worker(self.worker)

    def _cells(self):
        info = self.model.info
        if self.from_folder.isChecked():
            folder = Path(self.folder.text().strip())
            return cells_from_folder(folder, info), {"verified_folder": str(folder)}
        sessions = signed_sessions(self.data_root, info)
        altered = {"altered_left_out": sessions.altered} if sessions.altered else {}
        return cells_from_sessions(sessions, info), {"sessions": [s.name for s in sessions], **who_signed(sessions),
                                                     **altered}

    def _quick_progress(self, stage: str, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"{'Reading cells' if stage == 'features' else 'Cross-validating'} %v/%m")

    def _quick_fitted(self, prepared: PreparedAdaptation) -> None:
        self._done()
        self.prepared = prepared
        a = prepared.adaptation
        self.text.setHtml(report_html({"before": a.before.as_dict(), "after": a.after.as_dict(), "folds": a.folds,
                                       "cells": a.after.n, "notes": a.notes, "review_classes": a.kept_from_base},
                                      "Quick (a new head on the base model's features; the weaker method)"))
        self._offer_install(a.before.as_dict(), a.after.as_dict())

    # --- both ---------------------------------------------------------------------------------
    def _offer_install(self, before: dict, after: dict) -> None:
        worse = loss_text(before, after) is not None
        self.override.setVisible(worse)
        self.override_label.setVisible(worse)
        self.install_button.setEnabled(True)

    def cancel_fit(self) -> None:
        self._cancelled = True
        if self.process is not None:
            self.process.terminate()  # the trainer writes nothing unless it finished
        if self.worker is not None:
            self.worker.cancel.set()

    _cancelled = False

    def _done(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.fit_button.setEnabled(True)
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
            self.thread = None

    def install(self) -> None:
        override = self.override.text().strip() or None
        try:
            if self.candidate is not None:
                key = self.model.info.key
                site = slug(self.site.text())
                out = self.models_folder / f"{key}-site-{site}-{next_number(self.models_folder, key, site)}.onnx"
                shipped = resource("models")
                path = install_site_model(self.candidate, out, self.approver.text(),
                                          find_model_files(shipped, self.models_folder), [shipped], override,
                                          allow_same_login=self.allow_same_login)
            elif self.prepared is not None:
                path = write_site_model(self.model, self.prepared, self.site.text(), self.approver.text(),
                                        self.models_folder, override=override, allow_same_login=self.allow_same_login)
            else:
                return
        except SlideTallyError as exc:
            QMessageBox.warning(self, "Not installed", str(exc))
            return
        log.info("site model %s installed, approved by %s%s", path.name, self.approver.text().strip(),
                 f"; loss accepted: {override}" if override else "")
        self.installed = path
        self.on_installed(path)
        self.accept()

    def done(self, result: int) -> None:  # accept, reject, Esc, close: stop any fitting, drop the scratch
        self.cancel_fit()
        if self.process is not None:
            self.process.waitForFinished(5000)
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)
        super().done(result)


def slug_or_none(name: str) -> str | None:
    try:
        return slug(name)
    except SlideTallyError:
        return None


def format_seconds(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def report_html(report: dict, method: str) -> str:
    """The site cross-validated figures, base vs site, with any loss named in red."""
    e = html.escape

    def cell(value) -> str:
        return "—" if value is None or value != value else f"{value:.1%}"

    def row(name: str, figures: dict) -> str:
        return f"<tr><td>{name}</td>" + "".join(f"<td align=right>{cell(figures.get(k))}</td>" for k in KEYS) + "</tr>"

    before, after = report["before"], report["after"]
    parts = [f"<h3>Site cross-validated on this lab's cells — {e(method)}</h3>",
             f"<p>{e(str(report.get('folds', '')))}; {report.get('cells', '')} cells.</p>",
             "<table border=1 cellspacing=0 cellpadding=4><tr><th></th><th>Accuracy</th><th>Balanced accuracy</th>"
             "<th>Accepted (not Review)</th><th>Right among accepted</th></tr>",
             row("Base model", before), row("Site model", after), "</table>"]
    interval = after.get("accuracy_interval")
    if interval:
        parts.append(f"<p><b>Accuracy of the site model: {cell(after.get('accuracy'))}, 95% interval "
                     f"{cell(interval[0])}–{cell(interval[1])}</b> (resampling this lab's specimens: what another "
                     "specimen of this lab can expect).</p>")
    rare = report.get("review_classes") or []
    if rare:
        parts.append(f"<p style='color:#b45309'><b>Fewer than 10 verified cells:</b> {e(', '.join(rare))}. The site "
                     "model's calls of these go to Review; verify more of them before relying on it.</p>")
    unlabelled = report.get("unlabelled") or {}
    if unlabelled.get("offered"):
        parts.append(f"<p>The lab's unlabelled cells (sessions not signed off): {unlabelled['pseudo_labelled']} of "
                     f"{unlabelled['offered']} confidently called cells also trained the site model; its thresholds "
                     "were set on verified cells only.</p>")
    loss = loss_text(before, after)
    if loss:
        parts.append(f"<p style='color:#b00020'><b>Worse than the base model:</b> {e(loss)}. It is installed only if "
                     "you give a reason to accept that loss; the reason is kept in the model.</p>")
    parts += [f"<p style='color:#b45309'>{e(n)}</p>" for n in report.get("notes", [])]
    parts.append("<p>Check the figures, name who approves (not one of the people who signed these cells), then "
                 "<b>Approve and install</b>.</p>")
    return "".join(parts)
