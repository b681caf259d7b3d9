"""A session: one folder, one model, one store (the model resolved by `inference.catalog`, the
folder compared by `rescan`, the calls checked by `classification`). It owns the technician's results and is
their only writer; it tells whoever listens what changed through plain-Python events.

Rules (the technician's record is never rewritten behind their back):
- files are known by their bytes; a touched file with the same bytes keeps its calls;
- open session: a changed file gets a new AI call (its old calls stay in the audit, the cell
  is marked "file changed"); a missing file is kept, marked missing and left out of counts;
- signed-off session: a rescan changes nothing, it reports new / changed / missing files,
  and only a reopen with a reason lets them in;
- an empty or unreachable folder never changes a session.
"""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import ActionRefused, FolderError, SlideTallyError
from desktop.core.inference.catalog import resolve_model
from desktop.core.inference.decision import Call
from desktop.core.inference.folder import expand_tissue_images
from desktop.core.inference.model import Model
from desktop.core.inference.model_info import IDC
from desktop.core.inference.pipeline import Progress, classify
from desktop.core.inference.scan import ScanCancelled, scan_folder, source_file
from desktop.core.inference.wsi import is_slide_file, is_slide_name, openslide_missing
from desktop.core.names import readable
from desktop.core.records import lifecycle
from desktop.core.records.classification import ForeignGuard, slide_step_revisions
from desktop.core.records.domain import (
    Actor,
    AuditEntry,
    Cell,
    FolderChanges,
    SessionRecord,
)
from desktop.core.records.integrity import ALTERED, RecordAltered
from desktop.core.records.rescan import compare
from desktop.core.records.session_events import SessionEvents
from desktop.core.records.slide_scale import check_slide, declare_mpp, declared_mpp, note_slide_scales
from desktop.core.records.store import SessionStore, session_path, store_error
from desktop.core.records.writer import Writer

SYSTEM = "SlideTally"


@dataclass(frozen=True)
class Previous:
    """A cell's final call before an action, so that the action can be undone."""

    file: str
    final_class: str | None
    confirmed: bool


@dataclass(frozen=True)
class ClassifyResult:
    classified: int
    cancelled: bool
    changes: FolderChanges
    applied: bool  # False when the session is signed off or the folder looked empty
    foreign: str = ""  # why classification stopped early: the images look foreign to this model


def why_not_openable(folder: Path) -> str | None:
    """Why `folder` cannot be opened as a session (not there, neither a folder nor a slide we can read), or None."""
    if not folder.exists():
        return f"The folder {readable(str(folder))} does not exist."
    if folder.is_dir() or is_slide_file(folder):
        return None
    missing = openslide_missing() if is_slide_name(folder) else None
    return (f"{readable(str(folder))} cannot be read: {missing}." if missing else
            f"{readable(str(folder))} is neither a folder nor a whole-slide image.")


class Session:
    def __init__(self, folder: Path, model: Model, store: SessionStore) -> None:
        self.folder = folder
        self.model = model
        self.info = model.info
        self.store = store
        self.events = SessionEvents()
        self.os_user = getpass.getuser()
        self.pending_changes = FolderChanges()  # seen by the last scan but not taken in
        self._classifying = threading.Event()
        self.altered = store.integrity_problems()  # non-empty: edited outside SlideTally; read-only, never exported
        self._seen_version = store.data_version()

    @classmethod
    def open(cls, folder: Path | str, model: Model | str | Path | None = None, data_dir: Path | None = None,
             slide_mpp: float | None = None, *, archive: bool = True) -> Session:
        """Open (or restore) the session of `folder` (or of one whole-slide image) with `model` (a Model,
        key, task or .onnx path). `slide_mpp`: µm per pixel of slides that do not record it, as the
        technician gives it (kept in the session). `archive=False` (a report of what is stored) refuses a
        session made by another model file instead of keeping it aside for a new one."""
        from desktop.core.resources import user_data_dir

        folder = Path(folder)
        problem = why_not_openable(folder)
        if problem:
            raise FolderError(problem)
        slide = folder.is_file()
        model = resolve_model(IDC if slide and model is None else model, folder if folder.is_dir() else None)
        try:
            root = Path(data_dir) if data_dir else user_data_dir()
        except OSError as exc:
            raise store_error(exc, Path(exc.filename or "the user data folder")) from exc
        path = session_path(root, folder, model.info.key)
        session = cls(folder.resolve(), model, SessionStore(path, folder, model.info.key, model.info.sha256,
                                                            archive=archive))
        try:
            declare_mpp(session.store, session._system(), slide_mpp)
            if slide:  # a slide that cannot be read at the model's scale is refused now, in one sentence
                check_slide(session.folder, model.info, session.declared_mpp)
        except SlideTallyError:
            session.close()
            raise
        return session

    @property
    def declared_mpp(self) -> float | None:
        """µm per pixel the technician gave for slides that do not record theirs (None: none given)."""
        return declared_mpp(self.store)

    def close(self) -> None:
        self.events.disconnect_all()
        self.store.close()

    # --- reading -------------------------------------------------------------------------
    def cells(self, files: Iterable[str] | None = None) -> list[Cell]:
        return self.store.cells(files)

    def audit(self) -> list[AuditEntry]:
        return self.store.audit()

    def record(self) -> SessionRecord:
        return lifecycle.record_of(self)

    @property
    def signed(self) -> bool:
        return self.record().signed

    def check_integrity(self) -> None:
        """Raise `RecordAltered` when the record no longer matches its audit chain or seal."""
        self.altered = self.store.integrity_problems()
        if self.altered:
            raise RecordAltered(f"{ALTERED}: {'; '.join(self.altered)}. It is shown read-only and nothing is exported "
                                "or sent to the LIS.")

    @property
    def classifying(self) -> bool:
        return self._classifying.is_set()

    # --- the folder ----------------------------------------------------------------------
    def _items(self, cancel: threading.Event | None) -> list:
        try:
            files = [source_file(self.folder, self.folder.parent)] if self.folder.is_file() else scan_folder(self.folder, cancel)
        except OSError as exc:
            raise FolderError(f"Cannot read the folder {readable(str(self.folder))}: {exc.strerror or exc}") from exc
        if self.info.task == IDC:
            return expand_tissue_images(files, self.info.patch, self.info.mpp, self.declared_mpp)
        return files

    def _compare(self, items: list, cancel: threading.Event | None) -> tuple[FolderChanges, list]:
        """What differs between the folder and the store, by content; and what needs the model."""
        return compare(items, self.store.known_files(), cancel)

    def written_elsewhere(self) -> bool:
        """True once after another process (a second window, the CLI) stored something in this
        session: the caller reloads what it shows. Asked when the window comes back, not polled."""
        version = self.store.data_version()
        if version == self._seen_version:
            return False
        self._seen_version = version
        self.altered = self.store.integrity_problems()
        return True

    def look_for_changes(self) -> FolderChanges:
        """A read-only rescan of a signed-off session before a report: its exports name what changed."""
        if self.record().signed:
            self.pending_changes = self.changes()
        return self.pending_changes

    def changes(self, cancel: threading.Event | None = None) -> FolderChanges:
        """Files new, changed or missing since the session last took the folder in (writes nothing)."""
        return self._compare(self._items(cancel), cancel)[0]

    # --- classification ------------------------------------------------------------------
    def classify(self, progress: Callable[[Progress], None] | None = None, cancel: threading.Event | None = None,
                 batch_size: int = 64, check_foreign: bool = False) -> ClassifyResult:
        """Scan the folder and classify what is new or changed, under the rules above (blocking).

        With `check_foreign`, classification stops after the first batch when most of it is
        Unfamiliar to the model (a blood folder given to the tissue model, another lab's cells)."""
        cancel = cancel or threading.Event()
        if self.altered:
            self.check_integrity()
        self._classifying.set()
        try:
            try:
                items = self._items(cancel)
                changes, todo = self._compare(items, cancel)
            except ScanCancelled:
                return ClassifyResult(0, True, FolderChanges(), applied=False)
            if not self.record().signed:
                note_slide_scales(self.store, self._system(), items)
            if self.record().signed or changes.folder_empty:
                self.pending_changes = changes
                if changes.any:
                    self.events.notice.emit(self._notice(changes))
                return ClassifyResult(0, False, changes, applied=False)
            self._take_in_presence(changes)
            guard = ForeignGuard(cancel) if check_foreign else None
            done = self.classify_items(todo, set(changes.changed), progress, cancel, batch_size, guard)
            self.pending_changes = FolderChanges()
            if guard is not None and guard.verdict:
                message = (f"{guard.verdict} look unfamiliar to {self.info.display_name}: these images may be for "
                           "another assay, or from a lab this model is not verified for. Classification stopped after "
                           "them; choose another assay, or classify anyway.")
                self.events.notice.emit(message)
                return ClassifyResult(done, False, changes, applied=True, foreign=message)
            return ClassifyResult(done, cancel.is_set(), changes, applied=True)
        finally:
            self._classifying.clear()

    def classify_items(self, items: list, changed: set[str], progress=None, cancel=None, batch_size: int = 64,
                       guard: ForeignGuard | None = None) -> int:
        """Classify these items and store their calls (`changed`: files whose earlier calls they replace).
        `classify()` decides what to pass; benchmarks call this directly."""
        def on_progress(p: Progress) -> None:
            if progress:
                progress(p)
            self.events.progress.emit(p)

        def on_calls(calls: list[Call]) -> None:
            self.store_calls(calls, changed)
            if guard is not None:
                guard.look(calls)

        done = classify(self.model, items, on_calls, on_progress, cancel, batch_size=batch_size)
        if done:
            self.finish_run(done, cancel is not None and cancel.is_set())
        return done

    def finish_run(self, done: int, cancelled: bool) -> None:
        """After a run's calls are stored: the slide-level step, then the run's one audit row
        (the AI calls are audited per run, not per cell)."""
        self._apply_slide_step()
        with self.store.write(self._system()) as w:
            w.audit("classify", None, None, f"{done} image(s) by {self.info.key} {self.info.version}",
                    f"model SHA-256 {self.info.sha256}" + (" (cancelled)" if cancelled else ""))

    def _apply_slide_step(self) -> None:
        """Run the model's slide-level step over every patch of each slide in the session and
        revise the AI calls it changes (never a technician's call; a signed session is not
        classified at all). One audit line says what the step did."""
        step = self.info.slide_step
        revised = slide_step_revisions(self.store.patch_calls(), self.info) if step is not None else []
        if not revised:
            return
        with self.store.write(self._system()) as w:
            w.set_ai_many([(cell.file, fields) for cell, fields in revised])
            flipped = sum(c.ai_class != f.ai_class for c, f in revised)
            w.audit("slide step", None, None, None,
                    f"{step.describe()}: {flipped} AI call(s) changed by their neighbours on the slide")
        self._announce_changed(w)

    def _notice(self, changes: FolderChanges) -> str:
        if changes.folder_empty:
            return f"The folder {readable(str(self.folder))} is empty or unreachable; the stored session is kept as it was."
        return ("This session is signed off, so the folder's changes were not taken in: "
                f"{changes.summary()}. Reopen the session (with a reason) to take them in.")

    def _system(self) -> Actor:
        return Actor(SYSTEM, self.os_user)

    def _take_in_presence(self, changes: FolderChanges) -> None:
        """Mark missing files, bring back returned ones, refresh touched files' size/mtime."""
        if not (changes.missing or changes.touched):
            return
        with self.store.write(self._system()) as w:
            for file in changes.missing:
                w.set_missing(file, True)
                w.audit("file missing", file, reason="no longer in the folder; kept, not counted")
            for file in changes.returned:
                w.set_missing(file, False)
                w.audit("file back", file, reason="back in the folder with the same bytes")
            for file, size, mtime in changes.touched:
                w.set_stat(file, size, mtime)
        self._announce_changed(w)

    def store_calls(self, calls: list[Call], changed: set[str]) -> None:
        """Store one batch's calls in one transaction: new files' calls in one statement, changed files' one by one
        (each with its audit row)."""
        added = []
        with self.store.write(self._system()) as w:
            for call in calls:
                if call.relative not in changed:
                    continue
                before = w.cell(call.relative)
                if not w.put_call(call, file_changed=True):
                    continue  # another process stored this call for these bytes first
                if before is not None:
                    old = (f"AI {before.ai_class}, final {before.final_class} by {before.reviewer}"
                           if before.final_class else f"AI {before.ai_class}")
                    w.audit("file changed", call.relative, old, f"AI {call.ai_class or 'unreadable'}",
                            "the file's bytes changed: new AI call, earlier calls kept here")
            added = w.put_new_calls([c for c in calls if c.relative not in changed])
        events = self.events
        if not (events.cells_added.connected or events.cells_changed.connected):
            return  # nobody shows the cells (the CLI, a benchmark): they are not read back
        cells = self.store.cells(w.touched)
        new = set(added)
        if new:
            events.cells_added.emit([c for c in cells if c.file in new])
        if len(new) < len(cells):
            events.cells_changed.emit([c for c in cells if c.file not in new])

    def _announce_changed(self, writer: Writer) -> None:
        if writer.touched and self.events.cells_changed.connected:
            self.events.cells_changed.emit(self.store.cells(writer.touched))

    # --- the technician's actions (each one state-checked and audited in one transaction) ----
    def actor(self, operator: str) -> Actor:
        """Who acts: the named operator under this computer login (the audit trail records both). Refused for an
        empty name, or when the record was altered outside SlideTally."""
        operator = (operator or "").strip()
        if not operator:
            raise ActionRefused("Enter the operator's name first.")
        if self.altered:
            self.check_integrity()
        return Actor(operator, self.os_user)

    def _check_class(self, key: str) -> None:
        if key not in self.info.class_keys:
            raise ActionRefused(f"unknown class {key!r}")

    def reclassify(self, files: Iterable[str], new_class: str, operator: str) -> list[Previous]:
        """Set the final call of cells; returns what they were, for undo."""
        self._check_class(new_class)
        return self._finalise(files, operator, "reclassify", lambda cell: new_class)

    def confirm(self, files: Iterable[str], operator: str) -> list[Previous]:
        """Accept the current call of cells (the AI call, or an earlier correction) as final."""
        return self._finalise(files, operator, "confirm", lambda cell: cell.call)

    def _finalise(self, files: Iterable[str], operator: str, action: str, final_of) -> list[Previous]:
        """Give cells a confirmed final call, each with its audit row; unreadable and missing cells are left."""
        previous = []
        with self.store.write(self.actor(operator)) as w:
            for file in files:
                cell = w.cell(file)
                if cell is None or cell.unreadable or cell.missing:
                    continue
                previous.append(Previous(file, cell.final_class, cell.confirmed))
                final = final_of(cell)
                w.set_final(file, final, True)
                # "reclassify ig → ig" is a confirmation: the audit says what happened
                w.audit("confirm" if final == cell.call else action, file, cell.call, final)
        self._announce_changed(w)
        return previous

    def restore(self, previous: list[Previous], operator: str, action: str = "undo") -> None:
        """Put final calls back as they were (undo / redo), audited like any change."""
        with self.store.write(self.actor(operator)) as w:
            for p in previous:
                cell = w.cell(p.file)
                if cell is None:
                    continue
                w.set_final(p.file, p.final_class, p.confirmed)
                old, new = cell.call, p.final_class or cell.ai_class
                if old == new:  # only the confirmation comes and goes: say so, not "neutrophil → neutrophil"
                    old, new = (f"{old} ({'confirmed' if c else 'not confirmed'})" for c in (cell.confirmed, p.confirmed))
                w.audit(action, p.file, old, new)
        self._announce_changed(w)

    def set_identity(self, specimen_id: str, patient_id: str, operator: str) -> None:
        lifecycle.set_identity(self, specimen_id, patient_id, operator)

    def set_target(self, value: int, operator: str) -> None:
        lifecycle.set_target(self, value, operator)

    def sign_off_blockers(self) -> str:
        return lifecycle.sign_off_blockers(self)

    def sign_off(self, operator: str, specimen_id: str | None = None) -> None:
        lifecycle.sign_off(self, operator, specimen_id)

    def verify(self, operator: str, *, allow_same_account: bool = False) -> None:
        lifecycle.verify(self, operator, allow_same_account=allow_same_account)

    def reopen(self, operator: str, reason: str) -> None:
        lifecycle.reopen(self, operator, reason)
