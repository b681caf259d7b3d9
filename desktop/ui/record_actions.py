"""What the technician does with a session's record, as a part of the main window: the
specimen, sign-off, second-person verification, reopen, the audit trail and the exports.
The work is the core's (Session, export, report); this only asks and shows."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QInputDialog

from desktop.core.export import ExportError, export_audit_csv, export_csv
from desktop.core.session import SessionLocked, SignOffRefused
from desktop.ui.audit_view import AuditDialog
from desktop.ui.dialogs import IdentityForm

log = logging.getLogger(__name__)


class RecordActions:
    """Mixed into MainWindow; uses its `session`, `info`, `folder`, `settings`, `summary`, `ask`, `error`."""

    # --- identity, sign-off, verification, reopen ------------------------------------------------
    def edit_identity(self) -> None:
        if self.session is None or self._refuse_if_signed():
            return
        record = self.session.record()
        answer = IdentityForm.ask(self, "Specimen", record.specimen_id or self.folder.name, record.patient_id)
        operator = self.operator() if answer else None
        if answer and operator:
            self._guarded(lambda: self.session.set_identity(answer[0], answer[1], operator))

    def sign_off(self) -> None:
        if self.session is None:
            return
        if self.is_classifying():
            self.error("Still classifying", "Wait until classification has finished before signing off.")
            return
        if self.info is not None and self.info.task == "blood-differential":
            from desktop.core.summary import differential

            diff = differential(self.session.cells(), self.info, target=self.summary.target.value())
            if diff.wbc < diff.target and not self.ask(
                    "Below the target count", f"Only {diff.wbc} white cells are counted; the target is {diff.target}. "
                    "The percentages are imprecise. Sign off anyway?"):
                return
        record = self.session.record()
        answer = IdentityForm.ask(self, "Sign off", record.specimen_id or self.folder.name, record.patient_id,
                                  self._operator or "", note="Signing off makes the session read-only and the "
                                  "report final. Check the specimen ID and type your name.")
        if answer is None:
            return
        specimen, patient, name = answer
        try:
            if name:
                self.session.set_identity(specimen, patient, name)
            self.session.sign_off(name, specimen)
        except (SignOffRefused, SessionLocked, ValueError) as exc:
            self.error("Cannot sign off yet", str(exc))
            return
        self.undo_stack.clear()  # a signed-off session has nothing to undo
        self.statusBar().showMessage(f"Signed off by {name}. The session is now read-only.")

    def verify(self) -> None:
        if self.session is None or not self.session.signed:
            return
        name, ok = QInputDialog.getText(self, "Verify", "Second person's name (not the one who signed off):")
        if ok:
            self._guarded(lambda: self.session.verify(name))

    def reopen(self) -> None:
        if self.session is None or not self.session.signed:
            return
        reason, ok = QInputDialog.getText(self, "Reopen session", "Why is this signed-off session reopened?")
        if not ok:
            return
        operator = self.operator()
        if operator is None:
            return
        self._guarded(lambda: self.session.reopen(operator, reason))
        if not self.session.signed and self.session.pending_changes.any:
            self.rescan()  # the folder's changes, reported while signed, come in now

    def _guarded(self, fn) -> None:
        try:
            fn()
        except (SessionLocked, SignOffRefused, ValueError) as exc:
            self.error("Not possible", str(exc))
        except Exception as exc:  # noqa: BLE001
            log.exception("action failed")
            self.error("That did not work", str(exc))

    def show_audit(self) -> None:
        if self.session is None:
            return
        dialog = AuditDialog(self, f"Audit trail — {self.folder.name}", self.session.audit(), self.export_audit)
        dialog.exec()

    # --- export -----------------------------------------------------------------------------
    def _export_dir(self) -> str:
        return str(self.settings.value("export_dir", str(Path.home())))

    def _now(self) -> str:
        return dt.datetime.now().astimezone().isoformat(timespec="seconds")

    def _exporter(self) -> str:
        return self._operator or "(not given)"

    def _ask_save_path(self, title: str, suffix: str, kind: str) -> Path | None:
        """Where to write an export: the folder's name plus `suffix`, in the last export folder."""
        default = str(Path(self._export_dir()) / f"{self.folder.name}{suffix}")
        path, _ = QFileDialog.getSaveFileName(self, title, default, kind)
        return Path(path) if path else None

    def export_audit(self) -> None:
        if self.session is None:
            return
        path = self._ask_save_path("Export the audit trail", "-audit.csv", "CSV files (*.csv)")
        if path:
            self.write_audit_csv(path)

    def write_audit_csv(self, path: Path) -> bool:
        try:
            export_audit_csv(self.session.audit(), path, self.session.record(), self._now())
        except ExportError as exc:
            self.error("Export failed", str(exc))
            return False
        self.statusBar().showMessage(f"Audit trail exported: {path.name}.", 6000)
        return True

    def export_csv(self) -> None:
        if self.session is None or self.info is None:
            return
        path = self._ask_save_path("Export CSV (per image; the summary is written beside it)", "-cells.csv",
                                   "CSV files (*.csv)")
        if path:
            self.write_csv(path)

    def write_csv(self, path: Path) -> tuple[Path, Path] | None:
        summary = path.with_name(path.stem.removesuffix("-cells") + "-summary.csv")
        try:
            export_csv(self.session.cells(), self.info, path, summary, record=self.session.record(),
                       changes=self.session.pending_changes, operator=self._exporter(), when=self._now(),
                       target=self.summary.target.value())
        except ExportError as exc:
            self.error("Export failed", str(exc))
            return None
        self.settings.setValue("export_dir", str(path.parent))
        self.statusBar().showMessage(f"Exported {path.name} and {summary.name}.", 6000)
        return path, summary

    def export_pdf(self) -> None:
        if self.session is None or self.info is None:
            return
        path = self._ask_save_path("PDF report", "-report.pdf", "PDF files (*.pdf)")
        if path:
            self.write_pdf(path)

    def write_pdf(self, path: Path) -> bool:
        from desktop.core.summary import idc_summary
        from desktop.ui.heatmap import call_overlay_image
        from desktop.ui.report import report_html, write_pdf

        cells = self.session.cells()
        heat = None
        if self.info.task == "idc-patch":
            slide = idc_summary(cells, self.info)
            if slide.calls.size:
                heat = call_overlay_image(slide.calls, self.summary._mosaic)
        html_text = report_html(cells, self.info, record=self.session.record(), changes=self.session.pending_changes,
                                operator=self._exporter(), when=self._now(), target=self.summary.target.value(),
                                heat=heat)
        try:
            write_pdf(path, html_text)
        except OSError as exc:
            self.error("Report failed", f"The report could not be written: {exc}")
            return False
        self.settings.setValue("export_dir", str(path.parent))
        self.statusBar().showMessage(f"Report written: {path}", 6000)
        return True
