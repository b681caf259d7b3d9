"""The problems a technician can meet, as one family: `SlideTallyError` and its kinds.

Each message is one sentence a technician understands; the log keeps the details. The CLI
and the GUI catch only this family: anything else is a bug (exit 70, or the crash dialog with
the log), never dressed up as a refusal."""

from __future__ import annotations


class SlideTallyError(Exception):
    """A problem the technician can meet and act on; the message says what to do."""


class ActionRefused(SlideTallyError):
    """A technician's action that cannot be done as asked (no operator name, no reason, unknown class …)."""


class SessionLocked(ActionRefused):
    """The session was signed off; it must be reopened (with a reason) before changes."""


class SignOffRefused(ActionRefused):
    """Sign-off (or verification) is not possible yet; the message says what is left to do."""


class StoreError(SlideTallyError):
    """The session cannot be saved (disk full, read-only data folder, busy); what was saved before is kept."""


class FolderError(SlideTallyError):
    """The folder cannot be analysed (missing, not a folder, no permission)."""


class ModelError(SlideTallyError):
    """The model file cannot be used (damaged, foreign, or not honouring the model contract)."""


class ExportError(SlideTallyError):
    """The export could not be written; nothing partial was left behind."""
