"""Tamper evidence for a session record, in the spirit of 21 CFR Part 11: pure functions over
the rows the store keeps, so the store stays the only SQL.

- Audit rows are append-only (SQLite triggers in the store) and hash-chained: each row carries
  the hash of the row before it and a hash of its own content, and the session's meta holds the
  chain's head, so a row changed, deleted or inserted outside SlideTally breaks the chain.
- Sign-off and verification seal the record: a digest of every cell and of the identity (who,
  when, which specimen, which model file) is written into the meta and into the sealing audit
  row, so a call, a name or a time rewritten afterwards no longer matches.

What it cannot do: someone who knows this algorithm and rewrites every hash after an edit is
not caught (there is no secret); it catches an edit made with an SQLite tool, which is the
threat the lab meets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from desktop.core.errors import SlideTallyError

GENESIS = ""
SEAL_ACTIONS = ("sign-off", "verify")
# The identity a seal covers, besides the cells; verification adds its own two keys.
SIGNED_KEYS = ("folder", "model_sha256", "specimen_id", "patient_id", "signed_by", "signed_at")
VERIFIED_KEYS = (*SIGNED_KEYS, "verified_by", "verified_at")
# Sealed when present: a session signed before the key existed keeps its seal valid.
OPTIONAL_SEALED = ("target", "signed_login")
ALTERED = "This record was altered outside SlideTally"


class RecordAltered(SlideTallyError):
    """The session's record does not match its own audit chain or seal; nothing goes to the LIS."""


def _canonical(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def audit_row_hash(previous: str, fields: Sequence[object]) -> str:
    """The hash of one audit row: the previous row's hash and this row's content (at, who, os user,
    action, file, old, new, reason)."""
    return hashlib.sha256(previous.encode("ascii") + b"\x1f" + _canonical(list(fields))).hexdigest()


def record_digest(meta: dict[str, str], cell_rows: Iterable[Sequence[object]], keys: Sequence[str]) -> str:
    """A digest of the cells (every stored column but the row id, in file order) and the identity keys."""
    identity = [[k, meta.get(k, "")] for k in keys] + [[k, meta[k]] for k in OPTIONAL_SEALED if k in meta]
    cells = sorted([list(row) for row in cell_rows], key=lambda r: str(r[0]))
    return hashlib.sha256(_canonical([identity, cells])).hexdigest()


def chain_problems(rows: Sequence[Sequence[object]], head: str | None) -> list[str]:
    """Check an audit chain. `rows`: (id, at, who, os_user, action, file, old, new, reason, prev_hash,
    row_hash) in id order. Rows without a hash are allowed only before the first hashed one (sessions
    made before the chain existed)."""
    problems: list[str] = []
    previous = GENESIS
    hashed = False
    for row in rows:
        row_id, fields, prev_hash, own_hash = row[0], row[1:9], row[9], row[10]
        if own_hash is None:
            if hashed:
                problems.append(f"audit row {row_id} has no hash")
            continue
        hashed = True
        if prev_hash != previous:
            problems.append(f"the audit trail is broken before row {row_id} (a row was removed or inserted)")
        if audit_row_hash(prev_hash or GENESIS, fields) != own_hash:
            problems.append(f"audit row {row_id} was changed")
        previous = own_hash
    if hashed and head is not None and head != previous:
        problems.append("the last audit rows were removed")
    if head and not hashed:
        problems.append("the audit trail was emptied")
    return problems


def seal_problems(meta: dict[str, str], cell_rows: list[Sequence[object]], rows: Sequence[Sequence[object]]) -> list[str]:
    """Check the sign-off (and verification) seal against the cells and identity stored now."""
    problems: list[str] = []
    last_state_row = next((r for r in reversed(rows) if r[4] in ("sign-off", "reopen")), None)
    signed = meta.get("state") == "signed"
    sealed = last_state_row is not None and last_state_row[4] == "sign-off" and last_state_row[10] is not None
    if last_state_row is not None and last_state_row[4] == "sign-off" and not signed:
        problems.append("the session was signed off, but its state was changed without a reopen")
    if last_state_row is not None and last_state_row[4] == "reopen" and signed:
        problems.append("the session is marked signed off without a sign-off after its reopen")
    if signed and sealed:
        digest = record_digest(meta, cell_rows, SIGNED_KEYS)
        if meta.get("signed_digest") != digest or last_state_row[7] != digest:
            problems.append("the calls or the sign-off (who, when, specimen) differ from what was signed")
        verify = next((r for r in reversed(rows) if r[4] == "verify" and r[0] > last_state_row[0]), None)
        if meta.get("verified_by") or verify is not None:
            expected = record_digest(meta, cell_rows, VERIFIED_KEYS)
            if verify is None or meta.get("verified_digest") != expected or verify[7] != expected:
                problems.append("the verification (who, when) differs from what was recorded")
    elif signed and meta.get("signed_digest"):
        problems.append("the sign-off row of this session is missing")
    return problems
