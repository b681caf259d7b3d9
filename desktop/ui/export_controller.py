"""The open session's report, and everything written from it: CSV, PDF, HL7 and FHIR, the LIS hand-off after
sign-off, and the audit trail's CSV. The work is the core's (session_report, the outlets); this asks where, checks
the destination with the CLI's rules, and says what was written."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QLocale
from PySide6.QtWidgets import QFileDialog

from desktop.core.errors import ExportError, SlideTallyError
from desktop.core.policy import lab_policy
from desktop.core.records.domain import Cell, now
from desktop.core.report.assay_report import AssayReport
from desktop.core.report.codes import DEFAULT_CODES, CodeTableError, ResultCode, load_codes
from desktop.core.report.session_report import session_report
from desktop.ui.app_state import AppState
from desktop.ui.feedback import Feedback
from desktop.ui.operator import WhoIsWorking
from desktop.ui.settings import WindowSettings
from desktop.ui.summary_panel import SummaryPanel

log = logging.getLogger(__name__)


def lis_errors() -> tuple[type[Exception], ...]:
    """What an HL7 or FHIR export may raise (the outlets load when first used: the window opens sooner)."""
    from desktop.outlets.fhir import FhirError
    from desktop.outlets.hl7 import Hl7Error

    return ExportError, Hl7Error, FhirError


class Exports:
    def __init__(self, state: AppState, feedback: Feedback, settings: WindowSettings, who: WhoIsWorking,
                 summary: SummaryPanel, data_root: Path, user_models: Path) -> None:
        self.state, self.feedback, self.settings, self.who = state, feedback, settings, who
        self.summary, self.data_root, self.user_models = summary, data_root, user_models
        self._codes_table: dict[str, ResultCode] | None = None

    def report(self, cells: list[Cell] | None = None, *, with_history: bool = True) -> AssayReport:
        """The session's AssayReport: the one source of every figure the panel and the exports show."""
        return session_report(self.state.session, operator=self.who.exporter() if with_history else "",
                              codes=self._codes(), cells=cells, with_history=with_history)

    def _codes(self) -> dict[str, ResultCode]:
        """The LIS code table with the lab's overrides; a broken override file is said, not fatal."""
        if self._codes_table is None:
            try:
                self._codes_table = load_codes()
            except CodeTableError as exc:
                log.warning("%s", exc)
                self.feedback.status(f"{exc} Using the built-in codes.", 10000)
                self._codes_table = dict(DEFAULT_CODES)
        return self._codes_table

    # --- where ---------------------------------------------------------------------------------
    def _ask_save_path(self, title: str, suffix: str, kind: str) -> Path | None:
        """Where to write an export: the specimen ID (else the folder's name) plus `suffix`, in the last export folder."""
        record = self.state.record()
        specimen = record.specimen_id if record is not None else ""
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in specimen) or self.state.folder.name
        default = str(Path(self.settings.export_dir) / f"{stem}{suffix}")
        path, _ = QFileDialog.getSaveFileName(self.feedback.parent, title, default, kind)
        return Path(path) if path else None

    def _allowed(self, outputs: dict[str, Path]) -> bool:
        """The same output-path rules as the CLI (outlets/destinations.py); a refusal is said, nothing written."""
        from desktop.core.inference.model import find_model_files
        from desktop.core.resources import resource
        from desktop.outlets.destinations import check_destinations

        shipped, session = resource("models"), self.state.session
        try:
            check_destinations(outputs, analysed=session.folder, data_dir=self.data_root,
                               model_files=[*find_model_files(shipped, self.user_models), session.info.path],
                               model_folders=[shipped])
        except SlideTallyError as exc:
            self.feedback.error("Not written there", str(exc))
            return False
        return True

    def _ask_and_write(self, title: str, suffix: str, kind: str, write) -> None:
        """A menu's export: where to (the save dialog), then `write(path)`; nothing without an open session."""
        if self.state.session is not None:
            path = self._ask_save_path(title, suffix, kind)
            if path:
                write(path)

    def _written(self, path: Path, message: str) -> None:
        self.settings.export_dir = path.parent
        self.feedback.status(message, 6000)

    # --- the audit trail, CSV and PDF ----------------------------------------------------------------
    def export_audit(self) -> None:
        self._ask_and_write("Export the audit trail", "-audit.csv", "CSV files (*.csv)", self.write_audit_csv)

    def write_audit_csv(self, path: Path) -> bool:
        from desktop.outlets.csv import export_audit_csv, sidecar_path

        if not self._allowed({"The audit trail": path, "its JSON sidecar": sidecar_path(path)}):
            return False
        session = self.state.session
        try:
            export_audit_csv(session.audit(), path, session.record(), now())
        except ExportError as exc:
            self.feedback.error("Export failed", str(exc))
            return False
        self.feedback.status(f"Audit trail exported: {path.name}.", 6000)
        return True

    def export_csv(self) -> None:
        self._ask_and_write("Export CSV (per image; the summary is written beside it)", "-cells.csv",
                            "CSV files (*.csv)", self.write_csv)

    def write_csv(self, path: Path) -> tuple[Path, Path] | None:
        """Per-cell table + JSON sidecar + summary; separator and decimal mark follow the system locale."""
        from desktop.outlets.csv import CsvStyle, export_csv, sidecar_path

        summary = path.with_name(path.stem.removesuffix("-cells") + "-summary.csv")
        style = CsvStyle.for_decimal_point(QLocale().decimalPoint())
        if not self._allowed({"The CSV": path, "its JSON sidecar": sidecar_path(path), "the summary CSV": summary}):
            return None
        try:
            export_csv(self.report(), self.state.session.cells(), path, summary, style)
        except ExportError as exc:
            self.feedback.error("Export failed", str(exc))
            return None
        self._written(path, f"Exported {path.name} and {summary.name}.")
        return path, summary

    def export_pdf(self) -> None:
        self._ask_and_write("PDF report", "-report.pdf", "PDF files (*.pdf)", self.write_pdf)

    def write_pdf(self, path: Path) -> bool:
        from desktop.outlets import pdf

        if not self._allowed({"The PDF report": path}):
            return False
        assay = self.report()
        content = pdf.report_document(assay, self.state.session.folder, pdf.heat_image(assay, self.summary.mosaic))
        try:
            pdf.write_pdf(path, content)
        except ExportError as exc:
            self.feedback.error("Report failed", f"The report could not be written: {exc}")
            return False
        self._written(path, f"Report written: {path}")
        return True

    # --- the laboratory information system ------------------------------------------------------
    def export_hl7(self) -> None:
        from desktop.outlets.lis import write_hl7

        self._ask_and_write("Export HL7 v2 message (ORU^R01)", ".hl7", "HL7 messages (*.hl7)",
                            lambda path: self._write_lis(lambda: write_hl7(self.report(), path), path))

    def export_fhir(self) -> None:
        from desktop.outlets.lis import write_fhir

        self._ask_and_write("Export FHIR Bundle", ".fhir.json", "FHIR JSON (*.json)",
                            lambda path: self._write_lis(lambda: write_fhir(self.report(), path), path))

    def _write_lis(self, write, path: Path) -> bool:
        if not self._allowed({"The export": path}):
            return False
        try:
            write()
        except lis_errors() as exc:
            self.feedback.error("Export failed", str(exc))
            return False
        self._written(path, f"Written: {path.name}")
        return True

    def lis_folder(self) -> Path | None:
        """Where the LIS reads: the lab policy's folder when it names one, else this user's choice."""
        return lab_policy().lis_folder or self.settings.lis_folder

    def choose_lis_folder(self) -> None:
        """The LIS drop folder: after each sign-off the HL7 and FHIR files are written there."""
        if lab_policy().lis_is_the_labs:
            self.feedback.error("Set by the lab", f"The LIS folder is {lab_policy().lis_folder}, set by "
                                f"{lab_policy().source}.")
            return
        current = self.settings.lis_folder
        folder = QFileDialog.getExistingDirectory(self.feedback.parent, "LIS export folder (HL7 and FHIR after "
                                                  "sign-off)", str(current or Path.home()))
        if folder:
            self.settings.lis_folder = folder
            self.feedback.status(f"After sign-off, HL7 and FHIR files go to {folder}.", 6000)

    def send_to_lis(self) -> tuple[Path, Path] | None:
        """After sign-off: the report into the LIS drop folder, when one is set."""
        folder = self.lis_folder()
        if folder is None or self.state.session is None:
            return None
        from desktop.outlets.lis import hand_off

        try:
            written = hand_off(self.state.session, folder, operator=self.who.exporter(), codes=self._codes())
        except lis_errors() as exc:
            self.feedback.error("Not sent to the LIS", f"{exc} The session is signed off; send it again with "
                                "File → Export → HL7 / FHIR.")
            return None
        log.info("sent to the LIS folder: %s", ", ".join(p.name for p in written))
        return written
