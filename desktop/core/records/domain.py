"""Who and what a session's results belong to: specimen, model, sign-off, reopen and
verification, and how the folder has changed since. Every export writes these lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop.core.names import readable
from desktop.core.store import REOPENED, SIGNED


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

    @property
    def signed(self) -> bool:
        return self.state == SIGNED

    @property
    def status(self) -> str:
        """'final' once signed off, 'preliminary' before and after a reopen."""
        return "final" if self.signed else "preliminary"

    def status_line(self) -> str:
        if self.signed:
            line = f"Signed off {self.signed_at} by {self.signed_by}"
            if self.verified_by:
                line += f"; verified {self.verified_at} by {self.verified_by}"
            return line
        if self.state == REOPENED:
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
    if changes is not None and changes.any:
        lines.append(("Folder changed since sign-off" if record.signed else "Folder changes not yet classified",
                      changes.summary()))
    return lines
