"""One row of the session database as Python and SQLite each want it: the column lists, the
value conversion that keeps a file name that is not valid UTF-8 losslessly (as its raw bytes),
and a cell read back from its row. Shared by the store and its writer, the only places with SQL."""

from __future__ import annotations

import json
import os
import sqlite3

from desktop.core.records.domain import Cell

AUDIT_COLUMNS = "id, at, who, os_user, action, file, old, new, reason, prev_hash, row_hash"
# What a seal covers of each cell: everything but the row id and the file's size and time (a touched file).
SEALED_COLUMNS = ("relative, content_hash, ai_class, confidence, probabilities, second_class, ood_score, unfamiliar, "
                  "review, review_reason, unreadable, x, y, final_class, confirmed, reviewer, missing, file_changed")
CELL_COLUMNS = ("id, relative, ai_class, confidence, probabilities, second_class, ood_score, unfamiliar, review, "
                "review_reason, unreadable, x, y, final_class, confirmed, reviewer, missing, file_changed")


def db_value(value: object) -> object:
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


def db_values(*values) -> tuple:
    return tuple(db_value(v) for v in values)


def py_values(row) -> tuple:
    """A row as Python wants it: a stored name's raw bytes back to the str os gave us."""
    return tuple(os.fsdecode(v) if isinstance(v, bytes) else v for v in row)


def cell_of(row: tuple) -> Cell:
    row = py_values(row)
    return Cell(row[0], row[1], row[2], row[3] or 0.0, tuple(json.loads(row[4] or "[]")), row[5], row[6], bool(row[7]),
                bool(row[8]), row[9], row[10], row[11], row[12], row[13], bool(row[14]), row[15], bool(row[16]),
                bool(row[17]))


def meta_of(db: sqlite3.Connection) -> dict[str, str]:
    return dict(py_values(r) for r in db.execute("SELECT key, value FROM meta").fetchall())
