"""The session store: one SQLite database (WAL) per analysed folder and model, in the user
data folder, never in the source folder. Every technician action is committed at once
with an audit row, so killing the app loses nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from desktop.core.model import ModelInfo
from desktop.core.results import Call

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    relative TEXT UNIQUE NOT NULL,
    size INTEGER, mtime REAL,
    ai_class TEXT, confidence REAL, probabilities TEXT, second_class TEXT,
    ood_score REAL, unfamiliar INTEGER NOT NULL DEFAULT 0,
    review INTEGER NOT NULL DEFAULT 0, review_reason TEXT NOT NULL DEFAULT '',
    unreadable TEXT NOT NULL DEFAULT '',
    x INTEGER, y INTEGER,
    final_class TEXT, confirmed INTEGER NOT NULL DEFAULT 0,
    reviewer TEXT, changed_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    image_id INTEGER, old TEXT, new TEXT, reason TEXT
);
"""


class SessionLocked(Exception):
    """The session was signed off; it must be reopened (with a reason) before changes."""


class SignOffRefused(Exception):
    """Sign-off is not possible yet; the message says what is left to do."""


@dataclass(frozen=True)
class Cell:
    """One image of the session, as the technician sees it."""

    id: int
    relative: str
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

    @property
    def changed(self) -> bool:
        return self.final_class is not None and self.final_class != self.ai_class

    @property
    def needs_review(self) -> bool:
        """In the Review bin and not yet confirmed by the technician."""
        return self.review and not self.confirmed and not self.unreadable


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def session_path(root: Path, folder: Path, info: ModelInfo) -> Path:
    digest = hashlib.sha1(str(Path(folder).resolve()).encode("utf-8")).hexdigest()[:16]
    return Path(root) / "sessions" / f"{digest}-{info.key}.sqlite"


class SessionStore:
    def __init__(self, folder: Path, info: ModelInfo, root: Path):
        self.folder = Path(folder).resolve()
        self.info = info
        self.path = session_path(root, self.folder, info)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._archive_if_other_model()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=10000")  # the GUI and the classifier thread share the file
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        if self.meta("folder") is None:
            with self._tx():
                self._set_meta("folder", str(self.folder))
                self._set_meta("model", info.identity)
                self._set_meta("created", now())
                self._set_meta("state", "open")

    def _archive_if_other_model(self) -> None:
        """A session made by another version of the model is kept aside, never overwritten."""
        if not self.path.exists():
            return
        with sqlite3.connect(self.path) as db:
            row = db.execute("SELECT value FROM meta WHERE key='model'").fetchone()
        db.close()
        if row and row[0] != self.info.identity:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                old = Path(str(self.path) + suffix)
                if old.exists():
                    old.rename(Path(str(self.path.with_suffix("")) + f".{stamp}.sqlite{suffix}"))

    def close(self) -> None:
        self.db.close()

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store.db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, *_):
                store.db.execute("ROLLBACK" if kind else "COMMIT")

        return _Tx()

    # --- meta ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def signed_off(self) -> bool:
        return self.meta("state") == "signed"

    # --- model calls ---------------------------------------------------------------------
    def known_files(self) -> dict[str, tuple[int, float]]:
        return {r: (s, m) for r, s, m in self.db.execute("SELECT relative, size, mtime FROM images")}

    def still_to_classify(self, items: Iterable) -> list:
        """Items that are new or changed since they were classified (size or mtime differ)."""
        known = self.known_files()
        return [i for i in items if known.get(i.relative) != (i.size, i.mtime)]

    def forget_missing(self, present: set[str]) -> int:
        """Drop rows of files no longer in the folder (their audit rows stay)."""
        gone = [r for r in self.known_files() if r not in present]
        with self._tx():
            self.db.executemany("DELETE FROM images WHERE relative=?", [(r,) for r in gone])
        return len(gone)

    def add_calls(self, calls: list[Call]) -> None:
        rows = [(c.relative, c.size, c.mtime, c.ai_class, c.confidence, json.dumps(c.probabilities),
                 c.second_class, c.ood_score, int(c.unfamiliar), int(c.review), c.review_reason,
                 c.unreadable, c.x, c.y) for c in calls]
        with self._tx():
            self.db.executemany(
                """INSERT INTO images(relative, size, mtime, ai_class, confidence, probabilities, second_class,
                       ood_score, unfamiliar, review, review_reason, unreadable, x, y)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(relative) DO UPDATE SET size=excluded.size, mtime=excluded.mtime,
                       ai_class=excluded.ai_class, confidence=excluded.confidence,
                       probabilities=excluded.probabilities, second_class=excluded.second_class,
                       ood_score=excluded.ood_score, unfamiliar=excluded.unfamiliar, review=excluded.review,
                       review_reason=excluded.review_reason, unreadable=excluded.unreadable,
                       x=excluded.x, y=excluded.y, final_class=NULL, confirmed=0""",
                rows,
            )

    # --- reading -------------------------------------------------------------------------
    def cells(self, where: str = "") -> list[Cell]:
        rows = self.db.execute(
            f"""SELECT id, relative, ai_class, confidence, probabilities, second_class, ood_score, unfamiliar, review,
                      review_reason, unreadable, x, y, final_class, confirmed, reviewer FROM images {where} ORDER BY id"""
        ).fetchall()
        return [Cell(r[0], r[1], r[2], r[3] or 0.0, tuple(json.loads(r[4] or "[]")), r[5], r[6], bool(r[7]),
                     bool(r[8]), r[9], r[10], r[11], r[12], r[13], bool(r[14]), r[15]) for r in rows]

    def cell(self, image_id: int) -> Cell:
        return self.cells(f"WHERE id={int(image_id)}")[0]

    def cells_after(self, last_id: int) -> list[Cell]:
        """Rows added since `last_id` (the GUI polls these while a batch runs)."""
        return self.cells(f"WHERE id>{int(last_id)}")

    def audit(self) -> list[tuple]:
        return self.db.execute("SELECT at, who, action, image_id, old, new, reason FROM audit ORDER BY id").fetchall()

    # --- technician actions (each one committed at once, with its audit row) --------------
    def _check_open(self) -> None:
        if self.signed_off:
            raise SessionLocked("This session is signed off. Reopen it (with a reason) to make changes.")

    def reclassify(self, image_ids: list[int], new_class: str, who: str) -> list[tuple[int, str | None]]:
        """Set the final class; returns (id, previous final class) pairs for undo."""
        self._check_open()
        if new_class not in self.info.class_keys:
            raise ValueError(f"unknown class {new_class!r}")
        previous = []
        with self._tx():
            for image_id in image_ids:
                row = self.db.execute("SELECT ai_class, final_class, unreadable FROM images WHERE id=?",
                                      (image_id,)).fetchone()
                if row is None or row[2]:
                    continue
                old_effective = row[1] or row[0]
                previous.append((image_id, row[1]))
                self.db.execute("UPDATE images SET final_class=?, confirmed=1, reviewer=?, changed_at=? WHERE id=?",
                                (new_class, who, now(), image_id))
                self.db.execute("INSERT INTO audit(at, who, action, image_id, old, new) VALUES (?,?,?,?,?,?)",
                                (now(), who, "reclassify", image_id, old_effective, new_class))
        return previous

    def restore(self, previous: list[tuple[int, str | None]], who: str, action: str = "undo") -> None:
        """Put final classes back as they were (undo/redo), audited like any change."""
        self._check_open()
        with self._tx():
            for image_id, final in previous:
                row = self.db.execute("SELECT ai_class, final_class FROM images WHERE id=?", (image_id,)).fetchone()
                if row is None:
                    continue
                self.db.execute("UPDATE images SET final_class=?, confirmed=?, reviewer=?, changed_at=? WHERE id=?",
                                (final, int(final is not None), who, now(), image_id))
                self.db.execute("INSERT INTO audit(at, who, action, image_id, old, new) VALUES (?,?,?,?,?,?)",
                                (now(), who, action, image_id, row[1] or row[0], final or row[0]))

    def confirm(self, image_ids: list[int], who: str) -> list[tuple[int, str | None]]:
        """Accept the AI call of Review cells as the final call."""
        self._check_open()
        previous = []
        with self._tx():
            for image_id in image_ids:
                row = self.db.execute("SELECT ai_class, final_class, unreadable FROM images WHERE id=?",
                                      (image_id,)).fetchone()
                if row is None or row[2]:
                    continue
                previous.append((image_id, row[1]))
                final = row[1] or row[0]
                self.db.execute("UPDATE images SET final_class=?, confirmed=1, reviewer=?, changed_at=? WHERE id=?",
                                (final, who, now(), image_id))
                self.db.execute("INSERT INTO audit(at, who, action, image_id, old, new) VALUES (?,?,?,?,?,?)",
                                (now(), who, "confirm", image_id, final, final))
        return previous

    def sign_off(self, operator: str) -> None:
        operator = operator.strip()
        if not operator:
            raise SignOffRefused("Enter the operator's name to sign off.")
        self._check_open()
        left = sum(1 for c in self.cells() if c.needs_review)
        if left:
            raise SignOffRefused(f"{left} cell(s) in Review are not confirmed yet. Confirm or reclassify them first.")
        with self._tx():
            self._set_meta("state", "signed")
            self._set_meta("signed_by", operator)
            self._set_meta("signed_at", now())
            self.db.execute("INSERT INTO audit(at, who, action) VALUES (?,?,?)", (now(), operator, "sign-off"))

    def reopen(self, who: str, reason: str) -> None:
        if not reason.strip():
            raise ValueError("A reason is needed to reopen a signed-off session.")
        with self._tx():
            self._set_meta("state", "open")
            self.db.execute("INSERT INTO audit(at, who, action, reason) VALUES (?,?,?,?)",
                            (now(), who, "reopen", reason.strip()))
