"""The session store: one SQLite database (WAL) per analysed folder and model, in the user
data folder, never in the source folder. It and its writer are the only places with SQL. Every write runs in
one transaction that checks the session's state and writes its audit rows, so a signed-off
session cannot change and killing the app loses nothing.

File names are stored losslessly (records/rows.py); writes go through one `Writer`
(records/writer.py). Two processes may open one session at once: opening is
serialised by a lock file, and a call another process stored first is never overwritten."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from desktop.core.errors import ActionRefused, SessionLocked, StoreError
from desktop.core.records.domain import Actor, AuditEntry, Cell, PatchCall, SessionState, now
from desktop.core.records.integrity import chain_problems, current_seal, seal_problems
from desktop.core.records.rows import (
    AUDIT_COLUMNS,
    CELL_COLUMNS,
    SEALED_COLUMNS,
    cell_of,
    db_values,
    meta_of,
    py_values,
)
from desktop.core.records.schema import AUDIT_TRIGGERS, SCHEMA, schema_problems
from desktop.core.records.writer import Writer
from desktop.core.resources import private_dir

SCHEMA_VERSION = "2"
# A session kept aside (another model file, an older schema): <name>.<stamp>.sqlite. A model key may hold dots.
ARCHIVE_STAMP = "%Y%m%d-%H%M%S"
ARCHIVED = re.compile(r"\.\d{8}-\d{6}(-\d+)?\.sqlite$")
def store_error(exc: BaseException, folder: Path) -> StoreError:
    """One plain sentence for an SQLite or OS error met while saving a session."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    text = str(exc).lower()
    errno_ = getattr(exc, "errno", None)
    if code == 13 or "disk is full" in text or errno_ == 28:  # SQLITE_FULL, ENOSPC
        return StoreError(f"The disk holding the session data ({folder}) is full. Free some space and run again; "
                          "everything saved before is kept.")
    if code in (3, 8, 14) or "readonly" in text or "read-only" in text or isinstance(exc, PermissionError) \
            or errno_ == 30:  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, EROFS
        return StoreError(f"Cannot save the session in {folder}: the folder is read-only or not allowed. "
                          "Choose another data folder (--data-dir) or fix its permissions.")
    if code in (5, 6) or isinstance(exc, Timeout):  # SQLITE_BUSY, SQLITE_LOCKED
        return StoreError("The session is busy in another SlideTally for too long. Try again when it has finished.")
    return StoreError(f"The session could not be saved in {folder} ({exc}).")


@dataclass(frozen=True)
class StoredFile:
    """What the store remembers of a file, to tell touched from changed."""

    size: int | None
    mtime: float | None
    content_hash: str | None
    missing: bool


def private_file(path: Path) -> None:
    """Make the database 0600 before SQLite opens it (SQLite gives its -wal, -shm and -journal files the database's
    mode), and tighten the files of a session an older version made 0644."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # never truncates an existing session
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        sibling = Path(f"{path}{suffix}")
        if sibling.exists() and sibling.stat().st_mode & 0o077:
            sibling.chmod(0o600)


def session_path(root: Path, folder: Path, model_key: str) -> Path:
    digest = hashlib.sha1(str(Path(folder).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(root) / "sessions" / f"{digest}-{model_key}.sqlite"


class SessionStore:
    def __init__(self, path: Path, folder: Path, model_key: str, model_sha256: str, *, archive: bool = True) -> None:
        self.path = Path(path)
        self._may_archive = archive
        self._lock = threading.RLock()  # the GUI thread and the classifier thread share one connection
        try:
            private_dir(self.path.parent)
            # Two processes starting on one folder: one creates (or archives) the database while
            # the other waits, instead of reading a half-made one.
            with FileLock(str(self.path) + ".lock", timeout=60, mode=0o600):
                self._archive_if_other_model(model_sha256)
                private_file(self.path)
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA busy_timeout=10000")
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                # The schema is made once, for a new session: an existing one is never repaired (a dropped
                # trigger put back would hide that it was dropped), it is checked (`integrity_problems`).
                if not self.db.execute("SELECT 1 FROM sqlite_master").fetchone():
                    self.db.executescript(SCHEMA)
                    self.db.executescript(AUDIT_TRIGGERS)
                if self.meta("folder") is None:
                    with self.write(Actor("SlideTally", ""), require_open=False) as w:
                        w.set_meta("schema", SCHEMA_VERSION)
                        w.set_meta("folder", str(Path(folder).resolve()))
                        w.set_meta("model", model_key)
                        w.set_meta("model_sha256", model_sha256)
                        w.set_meta("created", now())
                        w.set_meta("state", SessionState.OPEN)
        except StoreError:
            raise
        except (sqlite3.Error, OSError, Timeout) as exc:
            raise store_error(exc, self.path.parent.parent) from exc

    def _archive_if_other_model(self, model_sha256: str) -> None:
        """A session made by another model file (or an older store) is kept aside under a new name,
        never overwritten. Only a positive reading moves it: a file that cannot be read (a full
        disk, a lock, damage) is an error and stays where it is."""
        if not self.path.exists():
            return
        try:
            with _read_only(self.path) as db:
                unfinished = _holds_nothing(db)
                rows = {} if unfinished else meta_of(db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"The session {self.path.name} cannot be read ({exc}); nothing was moved or changed. "
                             "Free disk space or check the data folder, then open it again.") from exc
        if unfinished:  # a start stopped before the session had its identity: nothing in it to keep
            for suffix in ("-wal", "-shm", ""):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            return
        if not rows.get("model_sha256") or not rows.get("schema"):
            raise StoreError(f"The session {self.path.name} holds no model or schema; it was left as it is.")
        if rows.get("model_sha256") == model_sha256 and rows.get("schema") == SCHEMA_VERSION:
            return
        if not self._may_archive:
            raise ActionRefused(f"The stored session {self.path.name} was made with another model file (SHA-256 "
                             f"{str(rows.get('model_sha256'))[:16]}…); it was left as it is. Report it with that model.")
        stamp = dt.datetime.now().strftime(ARCHIVE_STAMP)
        base = str(self.path.with_suffix(""))
        n = 0
        while any(Path(f"{base}.{stamp}{f'-{n}' if n else ''}.sqlite{x}").exists() for x in ("", "-wal", "-shm")):
            n += 1
        target = f"{base}.{stamp}{f'-{n}' if n else ''}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            old = Path(str(self.path) + suffix)
            if old.exists():
                os.link(old, target + suffix)  # fails rather than overwrite; then the old name goes
                old.unlink()

    def close(self) -> None:
        with self._lock:
            self.db.close()

    # --- the one write path ----------------------------------------------------------------
    @contextmanager
    def write(self, actor: Actor, *, require_open: bool = True) -> Iterator[Writer]:
        """A transaction; with `require_open` it refuses (SessionLocked) when the session is signed off.
        A disk that is full or read-only raises `StoreError`; the transaction is then rolled back whole."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error(exc, self.path.parent.parent) from exc
            try:
                if require_open and self._meta("state") == SessionState.SIGNED:
                    raise SessionLocked("This session is signed off. Reopen it (with a reason) to make changes.")
                writer = Writer(self.db, actor)
                yield writer
                self.db.execute("COMMIT")
            except BaseException as exc:
                if self.db.in_transaction:
                    try:
                        self.db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite has rolled back itself (a full disk can end the transaction)
                if isinstance(exc, sqlite3.Error):
                    raise store_error(exc, self.path.parent.parent) from exc
                raise

    # --- reading ---------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return py_values(row)[0] if row else None

    def meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta(key)

    def all_meta(self) -> dict[str, str]:
        with self._lock:
            return meta_of(self.db)

    def cells(self, files: Iterable[str] | None = None) -> list[Cell]:
        with self._lock:
            if files is None:
                rows = self.db.execute(f"SELECT {CELL_COLUMNS} FROM images ORDER BY id").fetchall()
            else:
                wanted = list(dict.fromkeys(files))
                rows = []
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    rows += self.db.execute(f"SELECT {CELL_COLUMNS} FROM images WHERE relative IN "
                                            f"({','.join('?' * len(chunk))}) ORDER BY id", db_values(*chunk)).fetchall()
        return [cell_of(r) for r in rows]

    def patch_calls(self) -> list[PatchCall]:
        """Every readable, present two-class call with a slide position, in row order (for the
        slide-level step: only the columns it reads)."""
        with self._lock:
            rows = self.db.execute("""SELECT relative, probabilities, x, y, ood_score, ai_class, review, confidence,
                                             final_class IS NOT NULL OR confirmed FROM images
                                      WHERE x IS NOT NULL AND y IS NOT NULL AND unreadable = '' AND missing = 0
                                      ORDER BY id""").fetchall()
        calls = []
        for relative, probabilities, x, y, ood, ai_class, review, confidence, seen in rows:
            p = json.loads(probabilities or "[]")
            if len(p) == 2:
                calls.append(PatchCall(os.fsdecode(relative) if isinstance(relative, bytes) else relative, p[1], x, y,
                                       ood, ai_class, bool(review), confidence or 0.0, bool(seen)))
        return calls

    def known_files(self) -> dict[str, StoredFile]:
        with self._lock:
            rows = self.db.execute("SELECT relative, size, mtime, content_hash, missing FROM images").fetchall()
        return {r[0]: StoredFile(r[1], r[2], r[3], bool(r[4])) for r in map(py_values, rows)}

    def data_version(self) -> int:
        """SQLite's count of commits by other connections (another SlideTally, the CLI): ours leave it."""
        with self._lock:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def integrity_problems(self) -> list[str]:
        """Why this record does not match its schema, audit chain or seal (empty: it does)."""
        with self._lock:
            return _integrity(self.db)

    def seal_now(self) -> str:
        """The sign-off seal recomputed from the record now ('' when not signed off)."""
        with self._lock:
            return _seal_now(self.db)

    def audit(self) -> list[AuditEntry]:
        with self._lock:
            rows = self.db.execute("SELECT at, who, os_user, action, file, old, new, reason FROM audit ORDER BY id").fetchall()
        return [AuditEntry(*py_values(r)) for r in rows]


def session_files(root: Path, *, archived: bool = False) -> list[Path]:
    """Every current session database under the data folder (and, with `archived`, those kept aside)."""
    folder = Path(root) / "sessions"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.sqlite") if archived or not ARCHIVED.search(p.name))


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A session database opened read-only: reading never creates, changes or moves it."""
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def _holds_nothing(db: sqlite3.Connection) -> bool:
    """No row in any table: what a start leaves when it is stopped (Ctrl-C, a kill) between creating
    the database and writing its identity in one transaction."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return not any(db.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables)


@contextmanager
def _snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """One read transaction, so reads that must agree (the chain's head and its rows) come from one
    moment even while another SlideTally on the same folder commits between them."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _integrity(db: sqlite3.Connection) -> list[str]:
    with _snapshot(db):
        schema = schema_problems(db)
        if schema:
            return schema  # rows of a schema not SlideTally's are not read as a record
        meta = meta_of(db)
        rows = [py_values(r) for r in db.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id").fetchall()]
        cells = [py_values(r) for r in db.execute(f"SELECT {SEALED_COLUMNS} FROM images").fetchall()]
    return chain_problems(rows, meta.get("chain_head")) + seal_problems(meta, cells, rows)


def _seal_now(db: sqlite3.Connection) -> str:
    with _snapshot(db):
        meta = meta_of(db)
        cells = [py_values(r) for r in db.execute(f"SELECT {SEALED_COLUMNS} FROM images").fetchall()]
    return current_seal(meta, cells)


def check_session_file(path: Path) -> list[str]:
    """`integrity_problems` of a session file, read-only (for `audit-check`). A file that cannot be read
    raises sqlite3.Error or OSError: that is not an alteration."""
    with _read_only(path) as db:
        return _integrity(db)


def seal_of_session_file(path: Path) -> str:
    """The session's sign-off seal recomputed from its record now, read-only ('' when not signed off)."""
    with _read_only(path) as db:
        return _seal_now(db)


def read_session(path: Path) -> tuple[dict[str, str], list[Cell]]:
    """A session's meta and cells, read-only (for verification reports and adaptation)."""
    with _read_only(path) as db:
        return meta_of(db), [cell_of(r) for r in db.execute(f"SELECT {CELL_COLUMNS} FROM images ORDER BY id").fetchall()]
