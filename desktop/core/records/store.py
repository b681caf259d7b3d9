"""The session store: one SQLite database (WAL) per analysed folder and model, in the user
data folder, never in the source folder. It is the only place with SQL. Every write runs in
one transaction that checks the session's state and writes its audit rows, so a signed-off
session cannot change and killing the app loses nothing.

File names are stored losslessly: a name that is not valid UTF-8 (os gives it as a str with
surrogate escapes) is stored as its raw bytes (a BLOB) and read back as the same str, so the
file opens again from what is stored. Two processes may open one session at once: opening is
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

from desktop.core.errors import SessionLocked, StoreError
from desktop.core.inference.decision import Call
from desktop.core.records.domain import Actor, AuditEntry, Cell, PatchCall, SessionState, now
from desktop.core.records.integrity import (
    GENESIS,
    SIGNED_KEYS,
    VERIFIED_KEYS,
    audit_row_hash,
    chain_problems,
    record_digest,
    seal_problems,
)
from desktop.core.resources import private_dir

SCHEMA_VERSION = "2"
# A session kept aside (another model file, an older schema): <name>.<stamp>.sqlite. A model key may hold dots.
ARCHIVE_STAMP = "%Y%m%d-%H%M%S"
ARCHIVED = re.compile(r"\.\d{8}-\d{6}(-\d+)?\.sqlite$")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    relative TEXT UNIQUE NOT NULL,
    size INTEGER, mtime REAL, content_hash TEXT,
    ai_class TEXT, confidence REAL, probabilities TEXT, second_class TEXT,
    ood_score REAL, unfamiliar INTEGER NOT NULL DEFAULT 0,
    review INTEGER NOT NULL DEFAULT 0, review_reason TEXT NOT NULL DEFAULT '',
    unreadable TEXT NOT NULL DEFAULT '',
    x INTEGER, y INTEGER,
    final_class TEXT, confirmed INTEGER NOT NULL DEFAULT 0,
    reviewer TEXT, changed_at TEXT,
    missing INTEGER NOT NULL DEFAULT 0,
    file_changed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL, os_user TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL, file TEXT, old TEXT, new TEXT, reason TEXT, prev_hash TEXT, row_hash TEXT
);
"""
# Audit rows are append-only (see records/integrity.py); created after any column migration.
AUDIT_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
"""
AUDIT_COLUMNS = "id, at, who, os_user, action, file, old, new, reason, prev_hash, row_hash"
# What a seal covers of each cell: everything but the row id and the file's size and time (a touched file).
SEALED_COLUMNS = ("relative, content_hash, ai_class, confidence, probabilities, second_class, ood_score, unfamiliar, "
                  "review, review_reason, unreadable, x, y, final_class, confirmed, reviewer, missing, file_changed")
CELL_COLUMNS = ("id, relative, ai_class, confidence, probabilities, second_class, ood_score, unfamiliar, review, "
                "review_reason, unreadable, x, y, final_class, confirmed, reviewer, missing, file_changed")

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


def _db(value):
    """A value as SQLite takes it: a str that is not valid UTF-8 (a file name) as its raw bytes."""
    if isinstance(value, str) and not value.isascii():  # ASCII (most names, every reason) is valid UTF-8
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:
                return os.fsencode(value)
            except UnicodeEncodeError:  # a lone surrogate no file system gave us: kept as readable text
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _args(*values) -> tuple:
    return tuple(_db(v) for v in values)


def _py(row) -> tuple:
    """A row as Python wants it: a stored name's raw bytes back to the str os gave us."""
    return tuple(os.fsdecode(v) if isinstance(v, bytes) else v for v in row)


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


def _cell(row: tuple) -> Cell:
    row = _py(row)
    return Cell(row[0], row[1], row[2], row[3] or 0.0, tuple(json.loads(row[4] or "[]")), row[5], row[6], bool(row[7]),
                bool(row[8]), row[9], row[10], row[11], row[12], row[13], bool(row[14]), row[15], bool(row[16]),
                bool(row[17]))


class Writer:
    """The one write path, handed out by `SessionStore.write()` inside a checked transaction."""

    def __init__(self, db: sqlite3.Connection, actor: Actor) -> None:
        self.db, self.actor = db, actor
        self.touched: list[str] = []  # files whose cells changed, for the caller's events
        self._head: str | None = None  # the audit chain's last hash, read once per transaction

    def audit(self, action: str, file: str | None = None, old: str | None = None, new: str | None = None,
              reason: str | None = None) -> None:
        """Append one audit row, chained to the one before it (records/integrity.py)."""
        if self._head is None:
            row = self.db.execute("SELECT row_hash FROM audit WHERE row_hash IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
            self._head = row[0] if row else GENESIS
        fields = _args(now(), self.actor.operator, self.actor.os_user, action, file, old, new, reason)
        own = audit_row_hash(self._head, _py(fields))
        self.db.execute("INSERT INTO audit(at, who, os_user, action, file, old, new, reason, prev_hash, row_hash) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?)", (*fields, self._head, own))
        self._head = own
        self.set_meta("chain_head", own)

    def seal(self, action: str) -> str:
        """Sign-off or verification: a digest of the cells and identity, in the meta and in its audit row."""
        meta = _meta_of(self.db)
        keys = VERIFIED_KEYS if action == "verify" else SIGNED_KEYS
        digest = record_digest(meta, [_py(r) for r in self.db.execute(f"SELECT {SEALED_COLUMNS} FROM images")], keys)
        self.set_meta("verified_digest" if action == "verify" else "signed_digest", digest)
        self.audit(action, new=digest)
        return digest

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", _args(key, value))

    def delete_meta(self, *keys: str) -> None:
        self.db.executemany("DELETE FROM meta WHERE key=?", [(k,) for k in keys])

    def cell(self, file: str) -> Cell | None:
        row = self.db.execute(f"SELECT {CELL_COLUMNS} FROM images WHERE relative=?", _args(file)).fetchone()
        return _cell(row) if row else None

    def set_final(self, file: str, final: str | None, confirmed: bool) -> None:
        self.db.execute("UPDATE images SET final_class=?, confirmed=?, reviewer=?, changed_at=? WHERE relative=?",
                        _args(final, int(confirmed), self.actor.operator if confirmed else None, now(), file))
        self.touched.append(file)

    def put_call(self, call: Call, file_changed: bool = False) -> bool:
        """Store the model's call; False when it was not needed because another process stored it first.

        A new file is inserted once. A changed file's call replaces the stored AI call and clears
        its final call, unless the stored call is already for these bytes (then it stays, with
        whatever the technician did to it since)."""
        conflict = ("""DO UPDATE SET size=excluded.size, mtime=excluded.mtime,
                   content_hash=excluded.content_hash, ai_class=excluded.ai_class, confidence=excluded.confidence,
                   probabilities=excluded.probabilities, second_class=excluded.second_class,
                   ood_score=excluded.ood_score, unfamiliar=excluded.unfamiliar, review=excluded.review,
                   review_reason=excluded.review_reason, unreadable=excluded.unreadable, x=excluded.x, y=excluded.y,
                   final_class=NULL, confirmed=0, reviewer=NULL, missing=0, file_changed=excluded.file_changed
                   WHERE images.content_hash IS NOT excluded.content_hash OR images.unreadable != excluded.unreadable"""
                    if file_changed else "DO NOTHING")
        cursor = self.db.execute(
            f"""INSERT INTO images(relative, size, mtime, content_hash, ai_class, confidence, probabilities, second_class,
                   ood_score, unfamiliar, review, review_reason, unreadable, x, y, file_changed)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(relative) {conflict}""",
            _args(call.relative, call.size, call.mtime, call.content_hash, call.ai_class, call.confidence,
                  json.dumps(call.probabilities), call.second_class, call.ood_score, int(call.unfamiliar), int(call.review),
                  call.review_reason, call.unreadable, call.x, call.y, int(file_changed)))
        if cursor.rowcount:
            self.touched.append(call.relative)
        return bool(cursor.rowcount)

    def put_new_calls(self, calls: list[Call]) -> list[str]:
        """Store the calls of files not classified before, in one statement; returns the files stored.
        A file another process stored first keeps its call (as `put_call` without `file_changed`):
        the write transaction holds the database, so what is stored cannot change between the two
        statements."""
        stored: set = set()
        names = [_db(c.relative) for c in calls]
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            stored.update(r[0] for r in self.db.execute(
                f"SELECT relative FROM images WHERE relative IN ({','.join('?' * len(chunk))})", chunk))
        new = []
        for name, c in zip(names, calls):
            if name not in stored:  # the first of two calls for one file wins, as with put_call
                stored.add(name)
                new.append((name, c))
        self.db.executemany(
            """INSERT INTO images(relative, size, mtime, content_hash, ai_class, confidence, probabilities, second_class,
                   ood_score, unfamiliar, review, review_reason, unreadable, x, y, file_changed)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)""",
            [(name, c.size, c.mtime, c.content_hash, c.ai_class, c.confidence, json.dumps(c.probabilities),
              c.second_class, c.ood_score, int(c.unfamiliar), int(c.review), _db(c.review_reason), _db(c.unreadable),
              c.x, c.y) for name, c in new])
        added = [c.relative for _, c in new]
        self.touched += added
        return added

    def set_ai_many(self, revised: list[tuple[str, object]]) -> None:
        """`set_ai` for many files in one statement (a slide-level step over a whole slide)."""
        self.db.executemany("""UPDATE images SET ai_class=?, confidence=?, second_class=?, unfamiliar=?, review=?,
                               review_reason=? WHERE relative=?""",
                            [_args(f.ai_class, f.confidence, f.second_class, int(f.unfamiliar), int(f.review),
                                   f.review_reason, file) for file, f in revised])
        self.touched += [file for file, _ in revised]

    def set_ai(self, file: str, fields) -> None:
        """Revise the AI call of a file (a slide-level step): the model's own probabilities and
        anything the technician did stay as they are."""
        self.db.execute("""UPDATE images SET ai_class=?, confidence=?, second_class=?, unfamiliar=?, review=?,
                           review_reason=? WHERE relative=?""",
                        _args(fields.ai_class, fields.confidence, fields.second_class, int(fields.unfamiliar),
                              int(fields.review), fields.review_reason, file))
        self.touched.append(file)

    def set_missing(self, file: str, missing: bool) -> None:
        self.db.execute("UPDATE images SET missing=? WHERE relative=?", _args(int(missing), file))
        self.touched.append(file)

    def set_stat(self, file: str, size: int, mtime: float) -> None:
        """A touched file (same bytes, new size/mtime): refresh the fast pre-check only."""
        self.db.execute("UPDATE images SET size=?, mtime=? WHERE relative=?", _args(size, mtime, file))


class SessionStore:
    def __init__(self, path: Path, folder: Path, model_key: str, model_sha256: str) -> None:
        self.path = Path(path)
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
                self.db.executescript(SCHEMA)
                columns = {r[1] for r in self.db.execute("PRAGMA table_info(audit)")}
                for column in ("prev_hash", "row_hash"):  # a session made before the audit chain
                    if column not in columns:
                        self.db.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
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
                rows = {} if unfinished else _meta_of(db)
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
        return _py(row)[0] if row else None

    def meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta(key)

    def all_meta(self) -> dict[str, str]:
        with self._lock:
            return _meta_of(self.db)

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
                                            f"({','.join('?' * len(chunk))}) ORDER BY id", _args(*chunk)).fetchall()
        return [_cell(r) for r in rows]

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
        return {r[0]: StoredFile(r[1], r[2], r[3], bool(r[4])) for r in map(_py, rows)}

    def data_version(self) -> int:
        """SQLite's count of commits by other connections (another SlideTally, the CLI): ours leave it."""
        with self._lock:
            return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def integrity_problems(self) -> list[str]:
        """Why this record does not match its audit chain or seal (empty: it does)."""
        with self._lock:
            return _integrity(self.db)

    def audit(self) -> list[AuditEntry]:
        with self._lock:
            rows = self.db.execute("SELECT at, who, os_user, action, file, old, new, reason FROM audit ORDER BY id").fetchall()
        return [AuditEntry(*_py(r)) for r in rows]


def session_files(root: Path) -> list[Path]:
    """Every current session database under the data folder (archived ones are left out)."""
    folder = Path(root) / "sessions"
    return sorted(p for p in folder.glob("*.sqlite") if not ARCHIVED.search(p.name)) if folder.is_dir() else []


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


def _meta_of(db: sqlite3.Connection) -> dict[str, str]:
    return dict(_py(r) for r in db.execute("SELECT key, value FROM meta").fetchall())


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
        meta = _meta_of(db)
        columns = {r[1] for r in db.execute("PRAGMA table_info(audit)")}
        if "row_hash" not in columns:
            return []  # a session made before the audit chain: nothing to check it against
        rows = [_py(r) for r in db.execute(f"SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id").fetchall()]
        cells = [_py(r) for r in db.execute(f"SELECT {SEALED_COLUMNS} FROM images").fetchall()]
    return chain_problems(rows, meta.get("chain_head")) + seal_problems(meta, cells, rows)


def check_session_file(path: Path) -> list[str]:
    """`integrity_problems` of a session file, read-only (for `audit-check`)."""
    with _read_only(path) as db:
        return _integrity(db)


def read_session(path: Path) -> tuple[dict[str, str], list[Cell]]:
    """A session's meta and cells, read-only (for verification reports and adaptation)."""
    with _read_only(path) as db:
        return _meta_of(db), [_cell(r) for r in db.execute(f"SELECT {CELL_COLUMNS} FROM images ORDER BY id").fetchall()]
