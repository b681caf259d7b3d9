"""What the technician does with a session's record: who is working, the specimen, sign-off,
second-person verification, reopen, the audit trail, the summary panel, the exports and the LIS
hand-off, and the lab tools. The work is the core's (Session.report, the outlets); this only
asks and shows."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path

from PySide6.QtCore import QLocale
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMainWindow

from desktop.core.errors import ExportError, SlideTallyError
from desktop.core.policy import lab_policy
from desktop.core.records.domain import now
from desktop.core.records.lifecycle import STILL_CLASSIFYING
from desktop.core.records.session import Session
from desktop.core.report.assay_report import AssayReport
from desktop.core.report.codes import DEFAULT_CODES, CodeTableError, ResultCode, load_codes
from desktop.core.report.session_report import session_report
from desktop.ui.audit_view import AuditDialog
from desktop.ui.busy import run_busy
from desktop.ui.dialogs import IdentityForm

log = logging.getLogger(__name__)


def lis_errors() -> tuple[type[Exception], ...]:
    """What an HL7 or FHIR export may raise (the outlets load when first used: the window opens sooner)."""
    from desktop.outlets.fhir import FhirError
    from desktop.outlets.hl7 import Hl7Error

    return ExportError, Hl7Error, FhirError


class RecordController:
    """The open session's record, as the window shows and exports it."""

    def __init__(self, window: QMainWindow) -> None:
        self.w = window
        self._operator: str | None = None  # asked once per app start
        self._codes_table: dict[str, ResultCode] | None = None

    @property
    def session(self) -> Session | None:
        return self.w.sessions.session

    @property
    def folder(self) -> Path | None:
        return self.w.sessions.folder

    def operator(self) -> str | None:
        """The technician's name, asked once per app start and recorded with every change; it changes only
        by File → Change user (a verifier's name serves their verification alone)."""
        if self._operator is None:
            self._ask_operator(self.w.settings.operator)
        return self._operator

    def _ask_operator(self, suggested: str) -> bool:
        name, ok = QInputDialog.getText(self.w, "Who is working?", "Your name (recorded with every change you make):",
                                        text=suggested)
        if not ok:
            return False
        if not name.strip():
            self.w.error("Your name is needed", "Nothing was changed: each change is recorded with the name of "
                         "the person who made it. Type your name when asked.")
            return False
        self._set_operator(name.strip())
        return True

    def _set_operator(self, name: str) -> None:
        self._operator = name
        self.w.settings.operator = name
        self.show_operator()

    def change_user(self) -> None:
        """File → Change user: the one way the name changes records are made under is changed."""
        before = self._operator
        if self._ask_operator("") and before and before != self._operator:
            log.info("user changed: %s -> %s (login %s)", before, self._operator, getpass.getuser())
            self.w.statusBar().showMessage(f"{self._operator} is working now; changes are recorded under this name.",
                                           6000)

    def show_operator(self) -> None:
        """The status bar's 'Working: Ana (login ana)', or who to ask for before the first change."""
        login = getpass.getuser()
        self.w.operator_label.setText(f"Working: {self._operator} (login {login})" if self._operator
                                      else f"Working: not named yet (login {login})")

    def refresh(self) -> None:
        """The summary panel, the bins' counts and which record actions apply, after any change."""
        w = self.w
        cells = w.gallery_model.cells
        record = self.session.record() if self.session else None
        w.summary.show_report(self.report(cells, with_history=False) if record is not None else None)
        w.bins.show_counts(w.proxy.counts(), len(cells))
        w.menu.show_record_state(record, altered=bool(self.session is not None and self.session.altered))

    def set_target(self, value: int) -> None:
        """The technician set the target count: the session's, audited; refused once signed off."""
        session = self.session
        if session is None or value == session.record().target:
            return
        operator = None if self.w.review.refuse_if_signed() else self.operator()
        if operator is not None:
            self._guarded(lambda: session.set_target(value, operator))
        self.refresh()  # shows the stored target again after a refusal

    # --- identity, sign-off, verification, reopen ------------------------------------------------
    def edit_identity(self) -> None:
        if self.session is None or self.w.review.refuse_if_signed():
            return
        record = self.session.record()
        answer = IdentityForm.ask(self.w, "Specimen", record.specimen_id or self.folder.name, record.patient_id)
        operator = self.operator() if answer else None
        if answer and operator:
            self._guarded(lambda: self.session.set_identity(answer[0], answer[1], operator))

    def sign_off(self) -> None:
        session = self.session
        if session is None:
            return
        if self.w.sessions.is_classifying():
            self.w.error("Cannot sign off yet", STILL_CLASSIFYING)
            return
        cells = self.w.gallery_model.cells
        blocker, question = run_busy(self.w, "Checking the session …", lambda: (
            session.sign_off_blockers(), self.report(cells, with_history=False).below_target()))
        if blocker:  # said first: no question is asked about a sign-off that cannot happen
            self.w.error("Cannot sign off yet", blocker)
            return
        if question and not self.w.ask("Below the target count", question):
            return
        record = session.record()
        specimen, patient, name = record.specimen_id or self.folder.name, record.patient_id, self._operator or ""
        while True:
            answer = IdentityForm.ask(self.w, "Sign off", specimen, patient, name, note="Signing off makes the session "
                                      "read-only and the report final. Check the specimen ID and type your name.")
            if answer is None:
                return
            specimen, patient, name = answer
            if specimen.strip() and name.strip():
                break
            self.w.error("Sign off", "Enter the specimen ID and your name to sign off.")  # and the form comes back
        def sign() -> None:  # the folder is checked byte by byte first: off the GUI thread
            session.set_identity(specimen, patient, name)
            session.sign_off(name, specimen)

        try:
            run_busy(self.w, "Checking the folder and signing off …", sign)
        except SlideTallyError as exc:
            self.w.error("Cannot sign off yet", str(exc))
            return
        if self._operator is None:  # named at sign-off: that is who is working (never a silent change)
            self._set_operator(name.strip())
        self.w.undo_stack.clear()  # a signed-off session has nothing to undo
        sent = self.send_to_lis()
        self.w.statusBar().showMessage(f"Signed off by {name}. The session is now read-only."
                                     + (f" Sent to the LIS folder: {sent[0].name}, {sent[1].name}." if sent else ""))

    def verify(self) -> None:
        if self.session is None or not self.session.signed:
            return
        name, ok = QInputDialog.getText(self.w, "Verify", "Second person's name (not the one who signed off; "
                                        "logged in as themself). It is recorded for this verification only:")
        if not ok:
            return
        allow = lab_policy().allow_signer_login  # the lab's rule, from its policy file
        try:
            self.session.verify(name, allow_same_account=allow)
        except SlideTallyError as exc:
            self.w.error("Not verified", str(exc))
            return
        # the verifier's name serves this act alone: who is working does not change
        self.w.statusBar().showMessage(f"Verified by {name.strip()}" + (" under the signer's login (allowed by the "
                                       "lab's policy; recorded in the audit trail)" if allow else "")
                                       + f". {self._operator or 'The operator'} is still the one working.", 8000)

    def reopen(self) -> None:
        if self.session is None or not self.session.signed:
            return
        reason, ok = QInputDialog.getText(self.w, "Reopen session", "Why is this signed-off session reopened?")
        if not ok:
            return
        operator = self.operator()
        if operator is None:
            return
        self._guarded(lambda: self.session.reopen(operator, reason))
        if not self.session.signed and self.session.pending_changes.any:
            self.w.sessions.rescan()  # the folder's changes, reported while signed, come in now

    def _guarded(self, fn) -> None:
        try:
            fn()
        except SlideTallyError as exc:
            self.w.error("Not possible", str(exc))

    def show_audit(self) -> None:
        if self.session is None:
            return
        dialog = AuditDialog(self.w, f"Audit trail — {self.folder.name}", self.session.audit(), self.export_audit)
        dialog.exec()

    # --- export -----------------------------------------------------------------------------
    def _export_dir(self) -> str:
        return self.w.settings.export_dir

    def _exporter(self) -> str:
        """Who exports: the name given at the keyboard, else the computer login (never "(not given)")."""
        return self._operator or f"computer login {getpass.getuser()} (no name given)"

    def _ask_save_path(self, title: str, suffix: str, kind: str) -> Path | None:
        """Where to write an export: the specimen ID (else the folder's name) plus `suffix`, in the last export folder."""
        specimen = self.session.record().specimen_id if self.session is not None else ""
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in specimen) or self.folder.name
        default = str(Path(self._export_dir()) / f"{stem}{suffix}")
        path, _ = QFileDialog.getSaveFileName(self.w, title, default, kind)
        return Path(path) if path else None

    def _allowed(self, outputs: dict[str, Path]) -> bool:
        """The same output-path rules as the CLI (outlets/destinations.py); a refusal is said, nothing written."""
        from desktop.core.inference.model import find_model_files
        from desktop.core.resources import resource
        from desktop.outlets.destinations import check_destinations

        shipped = resource("models")
        try:
            check_destinations(outputs, analysed=self.session.folder, data_dir=self.w.data_root,
                               model_files=[*find_model_files(shipped, self.w.user_models), self.session.info.path],
                               model_folders=[shipped])
        except SlideTallyError as exc:
            self.w.error("Not written there", str(exc))
            return False
        return True

    def export_audit(self) -> None:
        if self.session is None:
            return
        path = self._ask_save_path("Export the audit trail", "-audit.csv", "CSV files (*.csv)")
        if path:
            self.write_audit_csv(path)

    def write_audit_csv(self, path: Path) -> bool:
        from desktop.outlets.csv import export_audit_csv, sidecar_path

        if not self._allowed({"The audit trail": path, "its JSON sidecar": sidecar_path(path)}):
            return False
        try:
            export_audit_csv(self.session.audit(), path, self.session.record(), now())
        except ExportError as exc:
            self.w.error("Export failed", str(exc))
            return False
        self.w.statusBar().showMessage(f"Audit trail exported: {path.name}.", 6000)
        return True

    def report(self, cells=None, *, with_history: bool = True) -> AssayReport:
        """The session's AssayReport: the one source of every figure the panel and the exports show."""
        return session_report(self.session, operator=self._exporter() if with_history else "", codes=self._codes(),
                                   cells=cells, with_history=with_history)

    def _codes(self):
        """The LIS code table with the lab's overrides; a broken override file is said, not fatal."""
        if self._codes_table is None:
            try:
                self._codes_table = load_codes()
            except CodeTableError as exc:
                log.warning("%s", exc)
                self.w.statusBar().showMessage(f"{exc} Using the built-in codes.", 10000)
                self._codes_table = dict(DEFAULT_CODES)
        return self._codes_table

    def export_csv(self) -> None:
        if self.session is None or self.w.sessions.info is None:
            return
        path = self._ask_save_path("Export CSV (per image; the summary is written beside it)", "-cells.csv",
                                   "CSV files (*.csv)")
        if path:
            self.write_csv(path)

    def write_csv(self, path: Path) -> tuple[Path, Path] | None:
        """Per-cell table + JSON sidecar + summary; separator and decimal mark follow the system locale."""
        from desktop.outlets.csv import CsvStyle, export_csv, sidecar_path

        summary = path.with_name(path.stem.removesuffix("-cells") + "-summary.csv")
        style = CsvStyle.for_decimal_point(QLocale().decimalPoint())
        if not self._allowed({"The CSV": path, "its JSON sidecar": sidecar_path(path), "the summary CSV": summary}):
            return None
        try:
            export_csv(self.report(), self.session.cells(), path, summary, style)
        except ExportError as exc:
            self.w.error("Export failed", str(exc))
            return None
        self.w.settings.export_dir = path.parent
        self.w.statusBar().showMessage(f"Exported {path.name} and {summary.name}.", 6000)
        return path, summary

    def export_pdf(self) -> None:
        if self.session is None or self.w.sessions.info is None:
            return
        path = self._ask_save_path("PDF report", "-report.pdf", "PDF files (*.pdf)")
        if path:
            self.write_pdf(path)

    def write_pdf(self, path: Path) -> bool:
        from desktop.outlets import pdf

        if not self._allowed({"The PDF report": path}):
            return False
        assay = self.report()
        content = pdf.report_document(assay, self.session.folder, pdf.heat_image(assay, self.w.summary.mosaic))
        try:
            pdf.write_pdf(path, content)
        except ExportError as exc:
            self.w.error("Report failed", f"The report could not be written: {exc}")
            return False
        self.w.settings.export_dir = path.parent
        self.w.statusBar().showMessage(f"Report written: {path}", 6000)
        return True

    # --- the laboratory information system ------------------------------------------------------
    def export_hl7(self) -> None:
        from desktop.outlets.lis import write_hl7

        if self.session is not None:
            path = self._ask_save_path("Export HL7 v2 message (ORU^R01)", ".hl7", "HL7 messages (*.hl7)")
            if path:
                self._write_lis(lambda: write_hl7(self.report(), path), path)

    def export_fhir(self) -> None:
        from desktop.outlets.lis import write_fhir

        if self.session is not None:
            path = self._ask_save_path("Export FHIR Bundle", ".fhir.json", "FHIR JSON (*.json)")
            if path:
                self._write_lis(lambda: write_fhir(self.report(), path), path)

    def _write_lis(self, write, path: Path) -> bool:
        if not self._allowed({"The export": path}):
            return False
        try:
            write()
        except lis_errors() as exc:
            self.w.error("Export failed", str(exc))
            return False
        self.w.settings.export_dir = path.parent
        self.w.statusBar().showMessage(f"Written: {path.name}", 6000)
        return True

    def lis_folder(self) -> Path | None:
        """Where the LIS reads: the lab policy's folder when it names one, else this user's choice."""
        return lab_policy().lis_folder or self.w.settings.lis_folder

    def choose_lis_folder(self) -> None:
        """The LIS drop folder: after each sign-off the HL7 and FHIR files are written there."""
        if lab_policy().lis_is_the_labs:
            self.w.error("Set by the lab", f"The LIS folder is {lab_policy().lis_folder}, set by {lab_policy().source}.")
            return
        current = self.w.settings.lis_folder
        folder = QFileDialog.getExistingDirectory(self.w, "LIS export folder (HL7 and FHIR after sign-off)",
                                                  str(current or Path.home()))
        if folder:
            self.w.settings.lis_folder = folder
            self.w.statusBar().showMessage(f"After sign-off, HL7 and FHIR files go to {folder}.", 6000)

    def send_to_lis(self) -> tuple[Path, Path] | None:
        """After sign-off: the report into the LIS drop folder, when one is set."""
        folder = self.lis_folder()
        if folder is None or self.session is None:
            return None
        from desktop.outlets.lis import hand_off

        try:
            written = hand_off(self.session, folder, operator=self._exporter(), codes=self._codes())
        except lis_errors() as exc:
            self.w.error("Not sent to the LIS", f"{exc} The session is signed off; send it again with "
                       "File → Export → HL7 / FHIR.")
            return None
        log.info("sent to the LIS folder: %s", ", ".join(p.name for p in written))
        return written

    # --- lab tools ------------------------------------------------------------------------------
    def show_verification(self) -> None:
        from desktop.ui.lab_tools import VerificationDialog

        info = self.w.sessions.info
        if info is not None:
            VerificationDialog(self.w, self.w.sessions.model(info), self.w.data_root).exec()

    def show_adapt(self) -> None:
        from desktop.ui.adapt_dialog import AdaptDialog

        info = self.w.sessions.info
        if info is not None:
            AdaptDialog(self.w, self.w.sessions.model(info), self.w.data_root, self.w.user_models,
                        self.site_installed, allow_same_login=lab_policy().allow_signer_login).exec()

    def site_installed(self, path: Path) -> None:
        sessions, user_models = self.w.sessions, self.w.user_models
        folders = sessions.model_folders + ((user_models,) if sessions.model_folders and
                                            user_models not in sessions.model_folders else ())
        sessions.load_models(folders)  # the assay in use stays selected
        self.w.statusBar().showMessage(f"Site model installed: {path.name}. Choose it in the Assay list; the base model "
                                       "stays there too.", 10_000)
