"""The session's plain data, shared by every room of the core: a cell as the technician sees it,
an audit entry, who acts, the session's states, how the folder changed, and who and what a
session's results belong to. No SQL, no I/O: the store reads and writes these."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from desktop.core.names import readable
from desktop.core.policy import DEFAULT_TARGET_WBC


class SessionState(StrEnum):
    """The session's state, as kept in the store's meta 'state'."""

    OPEN = "open"
    SIGNED = "signed"
    REOPENED = "reopened"


def now() -> str:
    """The local time with its offset, to the second: every timestamp the app writes."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")



@dataclass(frozen=True)
class Cell:
    """One image of the session, as the technician sees it."""

    id: int
    file: str  # path relative to the session's folder (a tile: `name.png#x<X>_y<Y>`)
    ai_class: str | None
    confidence: float
    probabilities: tuple[float, ...]
    second_class: str | None
    ood_score: float | None
    unfamiliar: bool
    review: bool
    review_reason: str
    unreadable: str
    x: int | None
    y: int | None
    final_class: str | None
    confirmed: bool
    reviewer: str | None
    missing: bool = False  # no longer in the folder: kept, shown apart, not counted
    file_changed: bool = False  # its bytes changed since an earlier call; the old call is in the audit

    @property
    def call(self) -> str | None:
        """The cell's current call: the technician's where given, else the model's (the one rule)."""
        return self.final_class or self.ai_class

    @property
    def given(self) -> bool:
        """The technician has decided this cell: a call of their own, or the model's confirmed."""
        return self.final_class is not None or self.confirmed

    @property
    def changed(self) -> bool:
        return self.final_class is not None and self.final_class != self.ai_class

    @property
    def needs_review(self) -> bool:
        """In the Review bin and not yet confirmed by the technician."""
        return self.review and not self.confirmed and not self.unreadable and not self.missing

    @property
    def counted(self) -> bool:
        """Part of the counts: readable, present and not waiting for review."""
        return not self.unreadable and not self.missing and not self.needs_review


class PatchCall(NamedTuple):
    """What a slide-level step reads of one readable, present patch with a slide position."""

    file: str
    p_positive: float
    x: int
    y: int
    ood_score: float | None
    ai_class: str | None
    review: bool
    confidence: float
    seen: bool  # the technician has given a final call or confirmed it


@dataclass(frozen=True)
class Actor:
    """Who makes a change: the operator's name and the OS account it was made under."""

    operator: str
    os_user: str


@dataclass(frozen=True)
class AuditEntry:
    at: str
    operator: str
    os_user: str
    action: str
    file: str | None
    old: str | None
    new: str | None
    reason: str | None


@dataclass(frozen=True)
class FolderChanges:
    """Files new, changed (other bytes) or missing since the session last took the folder in."""

    new: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    returned: tuple[str, ...] = ()  # missing before, back now with the same bytes
    touched: tuple[tuple[str, int, float], ...] = field(default=(), compare=False)  # same bytes, new size/mtime
    folder_empty: bool = False  # nothing found although the session has files: unmounted share, wrong folder

    @property
    def any(self) -> bool:
        return bool(self.new or self.changed or self.missing or self.returned or self.folder_empty)

    def summary(self, names: int = 3) -> str:
        """One line naming the first few files of each kind."""
        if self.folder_empty:
            return "the folder is empty or unreachable; the stored session is kept as it was"

        def part(label: str, files: tuple[str, ...]) -> str:
            shown = ", ".join(readable(f) for f in files[:names]) + (f", … (+{len(files) - names})" if len(files) > names else "")
            return f"{len(files)} {label} ({shown})"

        parts = [part(label, files) for label, files in (("new", self.new), ("changed", self.changed),
                                                         ("missing", self.missing), ("back", self.returned)) if files]
        return "; ".join(parts) if parts else "none"


@dataclass(frozen=True)
class SessionRecord:
    folder: str
    model_key: str
    model_version: str
    model_sha256: str
    state: str
    specimen_id: str = ""
    patient_id: str = ""
    created_at: str = ""
    signed_by: str = ""
    signed_at: str = ""
    reopened_by: str = ""
    reopened_at: str = ""
    reopen_reason: str = ""
    verified_by: str = ""
    verified_at: str = ""
    target: int = DEFAULT_TARGET_WBC  # white cells to count (blood): the session's, frozen at sign-off
    corrected: bool = False  # signed off again after a reopen: the results correct a final report
    slide_scale: str = ""  # whole slides: how each was read (µm/px, where that came from, level)
    seal: str = ""  # signed off: the sign-off seal's SHA-256, the anchor every outlet carries

    @property
    def signed(self) -> bool:
        return self.state == SessionState.SIGNED

    @property
    def status(self) -> str:
        """'final' once signed off, 'corrected' once signed off again after a reopen, 'preliminary'
        before and while reopened."""
        if not self.signed:
            return "preliminary"
        return "corrected" if self.corrected else "final"

    def status_line(self) -> str:
        if self.signed:
            line = (f"CORRECTED report: signed off again {self.signed_at} by {self.signed_by} after a reopen"
                    if self.corrected else f"Signed off {self.signed_at} by {self.signed_by}")
            if self.verified_by:
                line += f"; verified {self.verified_at} by {self.verified_by}"
            return line
        if self.state == SessionState.REOPENED:
            return f"Reopened {self.reopened_at} by {self.reopened_by}: {self.reopen_reason} — not signed off"
        return "Not signed off — preliminary"


def record_lines(record: SessionRecord, changes: FolderChanges | None = None) -> list[tuple[str, str]]:
    """The identity block every export starts with (CSV header, PDF, CLI)."""
    lines = [
        ("Specimen ID", record.specimen_id or "(not entered)"),
        ("Patient ID", record.patient_id),
        ("Folder", readable(record.folder)),
        ("Model", f"{record.model_key} v{record.model_version} (SHA-256 {record.model_sha256[:16]})"),
        ("Status", record.status_line()),
        ("Signed off at", record.signed_at if record.signed else ""),
    ]
    if record.slide_scale:
        lines.append(("Slide scale", record.slide_scale))
    if changes is not None and changes.any:
        lines.append(("Folder changed since sign-off" if record.signed else "Folder changes not yet classified",
                      changes.summary()))
    return lines


MAX_IDENTIFIER = 64
_BIDI_CONTROLS = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}


def check_identifier(value: str, what: str) -> str:
    """A specimen or patient ID as the LIS and the reports can carry it: at most 64 printable
    characters, none that reorders text on screen (bidi controls could make 'B-12' read as '21-B')."""
    import unicodedata

    from desktop.core.errors import ActionRefused

    value = value.strip()
    if len(value) > MAX_IDENTIFIER:
        raise ActionRefused(f"The {what} is {len(value)} characters long; at most {MAX_IDENTIFIER} are allowed.")
    if any(not ch.isprintable() or unicodedata.bidirectional(ch) in _BIDI_CONTROLS for ch in value):
        raise ActionRefused(f"The {what} holds a control or text-direction character; type it again.")
    return value
