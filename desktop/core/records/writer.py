"""The one write path of the session store: handed out by `SessionStore.write()` inside a
checked transaction, it appends chained audit rows, seals records and stores calls."""

from __future__ import annotations

import json
import sqlite3

from desktop.core.inference.decision import Call
from desktop.core.records.domain import Actor, Cell, now
from desktop.core.records.integrity import (
    ALTERED,
    GENESIS,
    SEAL_SCHEME,
    RecordAltered,
    audit_row_hash,
    record_digest,
    sealed_keys,
)
from desktop.core.records.rows import CELL_COLUMNS, SEALED_COLUMNS, cell_of, db_value, db_values, meta_of, py_values
from desktop.core.records.schema import schema_problems


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
        fields = db_values(now(), self.actor.operator, self.actor.os_user, action, file, old, new, reason)
        own = audit_row_hash(self._head, py_values(fields))
        self.db.execute("INSERT INTO audit(at, who, os_user, action, file, old, new, reason, prev_hash, row_hash) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?)", (*fields, self._head, own))
        self._head = own
        self.set_meta("chain_head", own)

    def seal(self, action: str) -> str:
        """Sign-off or verification: a digest of the cells and every meta key a report reads, in the meta and
        in its audit row."""
        planted = schema_problems(self.db)
        if planted:  # a trigger planted in an open session would rewrite calls inside this very transaction
            raise RecordAltered(f"{ALTERED}: {'; '.join(planted)}. Nothing was sealed.")
        if action == "sign-off":
            self.set_meta("seal_scheme", SEAL_SCHEME)
        meta = meta_of(self.db)
        keys = sealed_keys(meta, action)
        digest = record_digest(meta, [py_values(r) for r in self.db.execute(f"SELECT {SEALED_COLUMNS} FROM images")], keys)
        self.set_meta("verified_digest" if action == "verify" else "signed_digest", digest)
        self.audit(action, new=digest)
        return digest

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", db_values(key, value))

    def delete_meta(self, *keys: str) -> None:
        self.db.executemany("DELETE FROM meta WHERE key=?", [(k,) for k in keys])

    def cell(self, file: str) -> Cell | None:
        row = self.db.execute(f"SELECT {CELL_COLUMNS} FROM images WHERE relative=?", db_values(file)).fetchone()
        return cell_of(row) if row else None

    def set_final(self, file: str, final: str | None, confirmed: bool) -> None:
        self.db.execute("UPDATE images SET final_class=?, confirmed=?, reviewer=?, changed_at=? WHERE relative=?",
                        db_values(final, int(confirmed), self.actor.operator if confirmed else None, now(), file))
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
            db_values(call.relative, call.size, call.mtime, call.content_hash, call.ai_class, call.confidence,
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
        names = [db_value(c.relative) for c in calls]
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
              c.second_class, c.ood_score, int(c.unfamiliar), int(c.review), db_value(c.review_reason), db_value(c.unreadable),
              c.x, c.y) for name, c in new])
        added = [c.relative for _, c in new]
        self.touched += added
        return added

    def set_ai_many(self, revised: list[tuple[str, object]]) -> None:
        """`set_ai` for many files in one statement (a slide-level step over a whole slide)."""
        self.db.executemany("""UPDATE images SET ai_class=?, confidence=?, second_class=?, unfamiliar=?, review=?,
                               review_reason=? WHERE relative=?""",
                            [db_values(f.ai_class, f.confidence, f.second_class, int(f.unfamiliar), int(f.review),
                                   f.review_reason, file) for file, f in revised])
        self.touched += [file for file, _ in revised]

    def set_ai(self, file: str, fields) -> None:
        """Revise the AI call of a file (a slide-level step): the model's own probabilities and
        anything the technician did stay as they are."""
        self.db.execute("""UPDATE images SET ai_class=?, confidence=?, second_class=?, unfamiliar=?, review=?,
                           review_reason=? WHERE relative=?""",
                        db_values(fields.ai_class, fields.confidence, fields.second_class, int(fields.unfamiliar),
                              int(fields.review), fields.review_reason, file))
        self.touched.append(file)

    def set_missing(self, file: str, missing: bool) -> None:
        self.db.execute("UPDATE images SET missing=? WHERE relative=?", db_values(int(missing), file))
        self.touched.append(file)

    def set_stat(self, file: str, size: int, mtime: float) -> None:
        """A touched file (same bytes, new size/mtime): refresh the fast pre-check only."""
        self.db.execute("UPDATE images SET size=?, mtime=? WHERE relative=?", db_values(size, mtime, file))
