"""What the technician does with a session's record: the specimen, sign-off, second-person verification,
reopen, the target count, the audit trail, and the summary panel and bins' counts that show it. The work is
the core's (the Session, session_report); this only asks and shows."""

from __future__ import annotations

import time

from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QInputDialog

from desktop.core.errors import SlideTallyError
from desktop.core.policy import lab_policy
from desktop.core.records.lifecycle import STILL_CLASSIFYING
from desktop.core.records.session import Session
from desktop.ui.app_state import AppState
from desktop.ui.audit_view import AuditDialog
from desktop.ui.bins import BinList
from desktop.ui.dialogs import IdentityForm
from desktop.ui.export_controller import Exports
from desktop.ui.feedback import Feedback
from desktop.ui.operator import WhoIsWorking
from desktop.ui.summary_panel import SummaryPanel

SUMMARY_EVERY_S = 1.0  # while cells arrive the summary recounts every cell: at most once a second


class RecordController:
    """The open session's record, as the window shows it. `rescan` classifies the folder again (a reopened
    session takes in the changes reported while it was signed)."""

    def __init__(self, state: AppState, feedback: Feedback, who: WhoIsWorking, exports: Exports,
                 summary: SummaryPanel, bins: BinList, undo_stack: QUndoStack, rescan) -> None:
        self.state, self.feedback, self.who, self.exports = state, feedback, who, exports
        self.summary, self.bins, self.undo_stack, self.rescan = summary, bins, undo_stack, rescan
        self._summary_at = 0.0
        summary.target_changed.connect(self.set_target)
        summary.mosaic_changed.connect(self.refresh)
        for signal in (state.session_changed, state.record_changed, state.model_changed, state.classifying_changed):
            signal.connect(self.refresh)
        state.cells_changed.connect(self._cells_changed)

    @property
    def session(self) -> Session | None:
        return self.state.session

    def operator(self) -> str | None:
        return self.who.name()

    def _cells_changed(self, arriving: bool) -> None:
        """A review shows at once; while the classifier delivers, the summary recounts at most once a second."""
        now = time.monotonic()
        if arriving and now - self._summary_at < SUMMARY_EVERY_S:
            return
        self._summary_at = now
        self.refresh()

    def refresh(self, *_) -> None:
        """The summary panel and the bins' counts, after any change; every figure from the state's cells."""
        cells = self.state.cells
        report = self.exports.report(cells.cells, with_history=False) if self.session is not None else None
        self.summary.show_report(report)
        self.bins.show_counts(cells.counts(), len(cells))

    def _refused(self) -> bool:
        """Said and True when the open session takes no change (signed off, or altered outside SlideTally)."""
        reason = self.state.why_read_only()
        if reason is not None:
            self.feedback.error(*reason)
        return reason is not None

    def set_target(self, value: int) -> None:
        """The technician set the target count: the session's, audited; refused once signed off."""
        session = self.session
        if session is None or value == session.record().target:
            return
        operator = None if self._refused() else self.operator()
        if operator is not None:
            self._guarded(lambda: session.set_target(value, operator))
        self.refresh()  # shows the stored target again after a refusal

    # --- identity, sign-off, verification, reopen ------------------------------------------------
    def edit_identity(self) -> None:
        if self.session is None or self._refused():
            return
        record = self.session.record()
        answer = IdentityForm.ask(self.feedback.parent, "Specimen", record.specimen_id or self.state.folder.name,
                                  record.patient_id)
        operator = self.operator() if answer else None
        if answer and operator:
            self._guarded(lambda: self.session.set_identity(answer[0], answer[1], operator))

    def sign_off(self) -> None:
        session = self.session
        if session is None:
            return
        if self.state.classifying:
            self.feedback.error("Cannot sign off yet", STILL_CLASSIFYING)
            return
        cells = self.state.cells.cells
        blocker, question = self.feedback.busy("Checking the session …", lambda: (
            session.sign_off_blockers(), self.exports.report(cells, with_history=False).below_target()))
        if blocker:  # said first: no question is asked about a sign-off that cannot happen
            self.feedback.error("Cannot sign off yet", blocker)
            return
        if question and not self.feedback.ask("Below the target count", question):
            return
        record = session.record()
        specimen, patient = record.specimen_id or self.state.folder.name, record.patient_id
        name = self.state.operator or ""
        while True:
            answer = IdentityForm.ask(self.feedback.parent, "Sign off", specimen, patient, name,
                                      note="Signing off makes the session read-only and the report final. Check the "
                                      "specimen ID and type your name.")
            if answer is None:
                return
            specimen, patient, name = answer
            if specimen.strip() and name.strip():
                break
            self.feedback.error("Sign off", "Enter the specimen ID and your name to sign off.")  # and the form comes back
        def sign() -> None:  # the folder is checked byte by byte first: off the GUI thread
            session.set_identity(specimen, patient, name)
            session.sign_off(name, specimen)

        try:
            self.feedback.busy("Checking the folder and signing off …", sign)
        except SlideTallyError as exc:
            self.feedback.error("Cannot sign off yet", str(exc))
            return
        if self.state.operator is None:  # named at sign-off: that is who is working (never a silent change)
            self.who.set(name.strip())
        self.undo_stack.clear()  # a signed-off session has nothing to undo
        sent = self.exports.send_to_lis()
        self.feedback.status(f"Signed off by {name}. The session is now read-only."
                             + (f" Sent to the LIS folder: {sent[0].name}, {sent[1].name}." if sent else ""))

    def verify(self) -> None:
        if self.session is None or not self.session.signed:
            return
        name, ok = QInputDialog.getText(self.feedback.parent, "Verify", "Second person's name (not the one who signed off; "
                                        "logged in as themself). It is recorded for this verification only:")
        if not ok:
            return
        allow = lab_policy().allow_signer_login  # the lab's rule, from its policy file
        try:
            self.session.verify(name, allow_same_account=allow)
        except SlideTallyError as exc:
            self.feedback.error("Not verified", str(exc))
            return
        # the verifier's name serves this act alone: who is working does not change
        self.feedback.status(f"Verified by {name.strip()}" + (" under the signer's login (allowed by the "
                             "lab's policy; recorded in the audit trail)" if allow else "")
                             + f". {self.state.operator or 'The operator'} is still the one working.", 8000)

    def reopen(self) -> None:
        if self.session is None or not self.session.signed:
            return
        reason, ok = QInputDialog.getText(self.feedback.parent, "Reopen session", "Why is this signed-off session reopened?")
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
        except SlideTallyError as exc:
            self.feedback.error("Not possible", str(exc))

    def show_audit(self) -> None:
        if self.session is not None:
            AuditDialog(self.feedback.parent, f"Audit trail — {self.state.folder.name}", self.session.audit(),
                        self.exports.export_audit).exec()
