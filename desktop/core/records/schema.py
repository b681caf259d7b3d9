"""The session database's schema: what SlideTally creates, and the check that a database holds nothing
else (the only SQL outside the store and its writer, and it only reads)."""

from __future__ import annotations

import sqlite3

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
# Audit rows are append-only (see records/integrity.py).
AUDIT_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
"""
# What SlideTally creates, and nothing else: a trigger, table, view, index or column beside these was made by
# another tool (a trigger planted in an open session would rewrite calls inside the technician's own sign-off).
EXPECTED_COLUMNS = {
    "meta": ["key", "value"],
    "images": ["id", "relative", "size", "mtime", "content_hash", "ai_class", "confidence", "probabilities",
               "second_class", "ood_score", "unfamiliar", "review", "review_reason", "unreadable", "x", "y",
               "final_class", "confirmed", "reviewer", "changed_at", "missing", "file_changed"],
    "audit": ["id", "at", "who", "os_user", "action", "file", "old", "new", "reason", "prev_hash", "row_hash"],
}
EXPECTED_INDEXES = {"sqlite_autoindex_meta_1", "sqlite_autoindex_images_1"}


def _normalised(sql: str | None) -> str:
    return " ".join((sql or "").replace("IF NOT EXISTS ", "").split())


EXPECTED_TRIGGERS = {name: _normalised(f"CREATE TRIGGER {name} {body}") for name, body in (
    ("audit_append_only_update", "BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END"),
    ("audit_append_only_delete", "BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END"))}


def _expected(kind: str, name: str, sql: str | None) -> bool:
    """An index or trigger SlideTally created (tables are checked column by column)."""
    if kind == "index":
        return name in EXPECTED_INDEXES
    return kind == "trigger" and EXPECTED_TRIGGERS.get(name) == _normalised(sql)


def schema_problems(db: sqlite3.Connection) -> list[str]:
    """How the database's schema differs from the one SlideTally creates (empty: it does not)."""
    problems = []
    objects = db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    for kind, name, sql in objects:
        if kind == "table" and name in EXPECTED_COLUMNS:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{name}")')]
            if columns != EXPECTED_COLUMNS[name]:
                extra = sorted(set(columns) - set(EXPECTED_COLUMNS[name]))
                gone = sorted(set(EXPECTED_COLUMNS[name]) - set(columns))
                problems.append(f"table {name} has columns SlideTally did not create"
                                + (f" ({', '.join(extra)})" if extra else "") + (f", lacks {', '.join(gone)}" if gone else ""))
        elif _expected(kind, name, sql):
            continue
        else:
            problems.append(f"it holds a {kind} {name!r} SlideTally did not create")
    names = {(kind, name) for kind, name, _ in objects}
    problems += [f"table {t} is missing" for t in EXPECTED_COLUMNS if ("table", t) not in names]
    problems += [f"the audit trail's guard {t!r} was removed" for t in EXPECTED_TRIGGERS if ("trigger", t) not in names]
    return problems
