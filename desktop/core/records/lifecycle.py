"""The record's life: its identity, its target count, sign-off, second-person verification and
reopen. Each step is state-checked and audited in one transaction of the session's store; the
Session's methods of the same names call these. They work on what `OpenSession` names of a session
(its store, model, events and acting person), not on the Session class, which imports this module.

Everything a report shows is frozen at sign-off: the specimen, the calls, and the target count,
which belongs to the session (an audited action, refused once signed like any other edit)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from desktop.core.errors import ActionRefused, SessionLocked, SignOffRefused
from desktop.core.inference.decision import review_by_rule
from desktop.core.inference.model_info import ModelInfo
from desktop.core.policy import lab_policy
from desktop.core.records.domain import (
    Actor,
    AuditEntry,
    Cell,
    FolderChanges,
    SessionRecord,
    SessionState,
    check_identifier,
    now,
)
from desktop.core.records.integrity import ALTERED, RecordAltered, unexplained_cells
from desktop.core.records.session_events import SessionEvents
from desktop.core.records.store import SessionStore


class OpenSession(Protocol):
    """What the record's life needs of an open session (records.session.Session is one)."""

    folder: Path
    info: ModelInfo
    store: SessionStore
    events: SessionEvents
    os_user: str

    @property
    def classifying(self) -> bool: ...

    @property
    def signed(self) -> bool: ...

    def record(self) -> SessionRecord: ...

    def actor(self, operator: str) -> Actor: ...

    def changes(self) -> FolderChanges: ...

    def audit(self) -> list[AuditEntry]: ...


TARGET_RANGE = (10, 10_000)
SAME_ACCOUNT_ALLOWED = "the lab allows the signer's OS account to verify (setting)"


def record_of(session: OpenSession) -> SessionRecord:
    meta = session.store.all_meta()
    info = session.info
    return SessionRecord(
        folder=str(session.folder), model_key=info.key, model_version=info.version, model_sha256=info.sha256,
        state=meta.get("state", SessionState.OPEN), specimen_id=meta.get("specimen_id", ""),
        patient_id=meta.get("patient_id", ""), created_at=meta.get("created", ""),
        signed_by=meta.get("signed_by", ""), signed_at=meta.get("signed_at", ""),
        reopened_by=meta.get("reopened_by", ""), reopened_at=meta.get("reopened_at", ""),
        reopen_reason=meta.get("reopen_reason", ""), verified_by=meta.get("verified_by", ""),
        verified_at=meta.get("verified_at", ""), target=_stored_target(meta.get("target")),
        corrected=bool(meta.get("reopened_at")),  # signed again after a reopen: a correction
        slide_scale=meta.get("slide_scale", ""),
        seal=meta.get("signed_digest", "") if meta.get("state") == SessionState.SIGNED else "")


def _stored_target(value: str | None) -> int:
    """The session's target, or the lab's default (its policy) where the session has none yet."""
    try:
        return int(value) if value else lab_policy().default_target_wbc
    except ValueError:
        return lab_policy().default_target_wbc


def check_target(value: int) -> int:
    low, high = TARGET_RANGE
    if not isinstance(value, int) or not low <= value <= high:
        raise ActionRefused(f"The target count must be a whole number from {low} to {high}.")
    return value


def set_target(session: OpenSession, value: int, operator: str) -> None:
    """The number of white cells this specimen is to be counted to (blood); audited, refused once signed."""
    value = check_target(value)
    before = session.record().target
    if value == before and session.store.meta("target") is not None:
        return
    with session.store.write(session.actor(operator)) as w:
        w.set_meta("target", str(value))
        w.audit("target count", None, str(before), str(value))
    session.events.state.emit(session.record())


def set_identity(session: OpenSession, specimen_id: str, patient_id: str, operator: str) -> None:
    """The specimen / accession ID (and optional patient ID) the results belong to."""
    specimen_id = check_identifier(specimen_id, "specimen ID")
    patient_id = check_identifier(patient_id, "patient ID")
    if not specimen_id:
        raise ActionRefused("Enter the specimen ID.")
    before = session.record()
    if (before.specimen_id, before.patient_id) == (specimen_id, patient_id):
        return
    with session.store.write(session.actor(operator)) as w:
        w.set_meta("specimen_id", specimen_id)
        w.set_meta("patient_id", patient_id)
        w.audit("specimen", None, f"{before.specimen_id} / {before.patient_id}".strip(" /"),
                f"{specimen_id} / {patient_id}".strip(" /"))
    session.events.state.emit(session.record())


STILL_CLASSIFYING = "Wait until classification has finished before signing off."


def review_left(session: OpenSession, cells: list[Cell] | None = None) -> str:
    """Why Review stops a sign-off now (empty when nothing is left to confirm)."""
    left = sum(1 for c in (session.store.cells() if cells is None else cells) if c.needs_review)
    return f"{left} {session.info.item_noun} in Review are not confirmed yet. Confirm or reclassify them first." \
        if left else ""


def nothing_counted(session: OpenSession, cells: list[Cell] | None = None) -> str:
    """Why there is nothing to sign (empty when at least one image is counted): an empty folder, a folder
    of files that are not images, or one whose every image was unreadable."""
    if any(not c.unreadable and not c.missing  # counted, or once reviewed
           for c in (session.store.cells() if cells is None else cells)):
        return ""
    return (f"There is nothing to sign off: no {session.info.item_noun.removesuffix('(s)').removesuffix('(es)')} "
            "of this folder was counted (it is empty, holds no images, or none could be read).")


def sign_off_blockers(session: OpenSession) -> str:
    """Why the session cannot be signed off as it stands (empty when it can): asked before any
    question about counts or names, so the technician is not asked twice."""
    if session.classifying:
        return STILL_CLASSIFYING
    if session.signed:
        return "This session is already signed off."
    return review_left(session) or nothing_counted(session)


def unexplained(session: OpenSession, cells: list[Cell]) -> str:
    """Why the cells cannot be sealed: a final call, a confirmation or a Review flag the AI calls and the
    audit trail do not explain (set outside SlideTally). Empty when every cell follows."""
    info = session.info
    wrong = unexplained_cells(cells, session.store.audit(),
                              lambda c: review_by_rule(info, c.ai_class, c.confidence, c.unfamiliar))
    if not wrong:
        return ""
    return (f"{ALTERED}: {len(wrong)} {info.item_noun}'s call or Review flag is not explained by the AI call and the "
            f"audit trail (first: {wrong[0]}). It cannot be signed off.")


def sign_off(session: OpenSession, operator: str, specimen_id: str | None = None) -> None:
    operator = (operator or "").strip()
    if not operator:
        raise SignOffRefused("Enter the operator's name to sign off.")
    if session.classifying:
        raise SignOffRefused(STILL_CLASSIFYING)
    if session.signed:
        raise SessionLocked("This session is already signed off.")
    if specimen_id is not None and specimen_id.strip():
        set_identity(session, specimen_id, session.record().patient_id, operator)
    if not session.record().specimen_id:
        raise SignOffRefused("Enter the specimen ID before signing off.")
    changes = session.changes()
    if changes.any:
        raise SignOffRefused(f"The folder has changed since it was classified ({changes.summary()}). "
                             "Classify it again before signing off.")
    with session.store.write(session.actor(operator)) as w:
        # again inside the transaction: nothing changes between check and seal
        cells = session.store.cells()  # read once, inside the transaction that seals them
        left = review_left(session, cells) or nothing_counted(session, cells)
        if left:
            raise SignOffRefused(left)
        forged = unexplained(session, cells)
        if forged:
            raise RecordAltered(forged)
        w.set_meta("state", SessionState.SIGNED)
        w.set_meta("signed_by", operator)
        w.set_meta("signed_login", session.os_user)  # the computer login, beside the typed name
        w.set_meta("signed_at", now())
        w.set_meta("target", str(session.record().target))  # frozen with the report
        w.delete_meta("verified_by", "verified_at", "verified_digest", "verified_login")
        w.seal("sign-off")
    session.events.state.emit(session.record())


def signer_account(session: OpenSession) -> str:
    """The OS account the sign-off was made under: the sealed `signed_login` (what `who_signed` reads
    too), or, for a session signed before that key existed, its sign-off audit row."""
    sealed = session.store.meta("signed_login")
    if sealed is not None:
        return sealed
    return next((e.os_user for e in reversed(session.audit()) if e.action == "sign-off"), "")


def verify(session: OpenSession, operator: str, *, allow_same_account: bool = False) -> None:
    """A second person's check of a signed-off session: another name, and another OS account
    unless the lab's setting allows the same one (then the audit row says so)."""
    actor = session.actor(operator)
    record = session.record()
    if not record.signed:
        raise SignOffRefused("Only a signed-off session can be verified.")
    if actor.operator.casefold() == record.signed_by.casefold():
        raise SignOffRefused("Verification must be done by a second person, not the one who signed off.")
    same_account = signer_account(session) == actor.os_user
    if same_account and not allow_same_account:
        raise SignOffRefused(f"Verification must be done under another computer login: {record.signed_by} signed off "
                             f"under the login {actor.os_user!r}, which is the one in use now. Log in as yourself, or "
                             "ask the lab to allow it in its policy file (verification.allow_signer_login).")
    with session.store.write(actor, require_open=False) as w:
        w.set_meta("verified_by", actor.operator)
        w.set_meta("verified_login", actor.os_user)
        w.set_meta("verified_at", now())
        w.seal("verify")
        if same_account:
            w.audit("same-account verification", None, None, actor.os_user, SAME_ACCOUNT_ALLOWED)
    session.events.state.emit(session.record())


def reopen(session: OpenSession, operator: str, reason: str) -> None:
    actor = session.actor(operator)
    if not reason.strip():
        raise ActionRefused("A reason is needed to reopen a signed-off session.")
    if not session.signed:
        raise ActionRefused("This session is not signed off.")
    with session.store.write(actor, require_open=False) as w:
        w.set_meta("state", SessionState.REOPENED)
        w.set_meta("reopened_by", actor.operator)
        w.set_meta("reopened_at", now())
        w.set_meta("reopen_reason", reason.strip())
        w.delete_meta("signed_by", "signed_at", "verified_by", "verified_at", "signed_digest", "verified_digest",
                      "signed_login", "verified_login")
        w.audit("reopen", reason=reason.strip())
    session.events.state.emit(session.record())
