"""Tamper evidence for a session record, in the spirit of 21 CFR Part 11: pure functions over
the rows the store keeps, so the store stays the only SQL.

- Audit rows are append-only (SQLite triggers in the store) and hash-chained: each row carries
  the hash of the row before it and a hash of its own content, and the session's meta holds the
  chain's head, so a row changed, deleted or inserted outside SlideTally breaks the chain.
- Sign-off and verification seal the record: a digest of every cell and of the identity (who,
  when, which specimen, which model file) is written into the meta and into the sealing audit
  row, so a call, a name or a time rewritten afterwards no longer matches.

- The seal covers every meta key a report reads (identity, target, reopen, slide scale, declared
  µm per pixel ...): all of them but the chain's head, the digests and, for the sign-off's seal,
  the verification that follows it (`SEAL_SCHEME` "2"; a session sealed before it keeps its seal).
- A session marked signed must hold its sealed sign-off row and digest; every audit row is chained
  (a record is never read as one made before the chain).

What it cannot do alone: someone who knows this algorithm and rewrites every hash after an edit is
not caught (there is no secret). The anchor catches that: the seal's digest travels in every
outlet (HL7, FHIR, PDF, CSV sidecar), and `audit-check --against` compares the LIS's copy with
the record's seal recomputed now.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence

from desktop.core.errors import SlideTallyError

GENESIS = ""
SEAL_ACTIONS = ("sign-off", "verify")
# The identity a seal covers, besides the cells; verification adds its own two keys.
SIGNED_KEYS = ("folder", "model_sha256", "specimen_id", "patient_id", "signed_by", "signed_at")
VERIFIED_KEYS = (*SIGNED_KEYS, "verified_by", "verified_at")
# Sealed when present: a session signed before the key existed keeps its seal valid.
OPTIONAL_SEALED = ("target", "signed_login")
SEAL_SCHEME = "2"  # meta 'seal_scheme': every meta key is sealed but these
NEVER_SEALED = ("chain_head", "signed_digest", "verified_digest")
VERIFICATION_KEYS = ("verified_by", "verified_at", "verified_login")  # after the sign-off's seal, sealed by verify's
ALTERED = "This record was altered outside SlideTally"


class RecordAltered(SlideTallyError):
    """The session's record does not match its own audit chain or seal; nothing goes to the LIS."""


def _canonical(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def audit_row_hash(previous: str, fields: Sequence[object]) -> str:
    """The hash of one audit row: the previous row's hash and this row's content (at, who, os user,
    action, file, old, new, reason)."""
    return hashlib.sha256(previous.encode("ascii") + b"\x1f" + _canonical(list(fields))).hexdigest()


def sealed_keys(meta: dict[str, str], action: str) -> list[str]:
    """The meta keys the seal of `action` ('sign-off' or 'verify') covers under the session's scheme."""
    if meta.get("seal_scheme") == SEAL_SCHEME:
        left_out = NEVER_SEALED + (VERIFICATION_KEYS if action == "sign-off" else ())
        return sorted(k for k in meta if k not in left_out)
    return list(VERIFIED_KEYS if action == "verify" else SIGNED_KEYS)


def record_digest(meta: dict[str, str], cell_rows: Iterable[Sequence[object]], keys: Sequence[str]) -> str:
    """A digest of the cells (every stored column but the row id, in file order) and the identity keys."""
    optional = [] if meta.get("seal_scheme") == SEAL_SCHEME else [k for k in OPTIONAL_SEALED if k in meta]
    identity = [[k, meta.get(k, "")] for k in keys] + [[k, meta[k]] for k in optional]
    cells = sorted([list(row) for row in cell_rows], key=lambda r: str(r[0]))
    return hashlib.sha256(_canonical([identity, cells])).hexdigest()


def chain_problems(rows: Sequence[Sequence[object]], head: str | None) -> list[str]:
    """Check an audit chain. `rows`: (id, at, who, os_user, action, file, old, new, reason, prev_hash,
    row_hash) in id order. Every row carries its hash: a session is never read as one made before the
    chain (the chain shipped before the first release, 0.1.0)."""
    problems: list[str] = []
    previous = GENESIS
    hashed = False
    for row in rows:
        row_id, fields, prev_hash, own_hash = row[0], row[1:9], row[9], row[10]
        if own_hash is None:
            problems.append(f"audit row {row_id} has no hash")
            continue
        hashed = True
        if prev_hash != previous:
            problems.append(f"the audit trail is broken before row {row_id} (a row was removed or inserted)")
        if audit_row_hash(prev_hash or GENESIS, fields) != own_hash:
            problems.append(f"audit row {row_id} was changed")
        previous = own_hash
    if hashed and head != previous:
        problems.append("the last audit rows were removed" if head else "the audit chain's head is missing")
    if head and not hashed:
        problems.append("the audit trail was emptied")
    return problems


def seal_problems(meta: dict[str, str], cell_rows: list[Sequence[object]], rows: Sequence[Sequence[object]]) -> list[str]:
    """Check the sign-off (and verification) seal against the cells and identity stored now."""
    problems: list[str] = []
    state = meta.get("state")
    if state not in ("open", "signed", "reopened"):
        problems.append(f"the session's state {state!r} is not one SlideTally writes")
    last_state_row = next((r for r in reversed(rows) if r[4] in ("sign-off", "reopen")), None)
    signed = state == "signed"
    sealed = last_state_row is not None and last_state_row[4] == "sign-off" and last_state_row[10] is not None
    if last_state_row is not None and last_state_row[4] == "sign-off" and not signed:
        problems.append("the session was signed off, but its state was changed without a reopen")
    if last_state_row is not None and last_state_row[4] == "reopen" and signed:
        problems.append("the session is marked signed off without a sign-off after its reopen")
    if signed and (not sealed or not meta.get("signed_digest")):
        problems.append("the session is marked signed off without its sealed sign-off")
    elif signed:
        digest = record_digest(meta, cell_rows, sealed_keys(meta, "sign-off"))
        if meta.get("signed_digest") != digest or last_state_row[7] != digest:
            problems.append("the calls or the sign-off (who, when, specimen) differ from what was signed")
        verify = next((r for r in reversed(rows) if r[4] == "verify" and r[0] > last_state_row[0]), None)
        if meta.get("verified_by") or verify is not None:
            expected = record_digest(meta, cell_rows, sealed_keys(meta, "verify"))
            if verify is None or meta.get("verified_digest") != expected or verify[7] != expected:
                problems.append("the verification (who, when) differs from what was recorded")
    elif meta.get("signed_digest") or meta.get("signed_by"):
        problems.append("an open session holds a sign-off")
    return problems


def current_seal(meta: dict[str, str], cell_rows: list[Sequence[object]]) -> str:
    """The sign-off seal recomputed from the record as it is now ('' for a session not signed off): what
    `audit-check --against` compares with the digest a delivered message carries."""
    if meta.get("state") != "signed":
        return ""
    return record_digest(meta, cell_rows, sealed_keys(meta, "sign-off"))


SEAL_TEXT = "Record seal SHA-256"
SEAL_PATTERN = re.compile(SEAL_TEXT + r" ([0-9a-f]{64})")


def seal_line(seal: str) -> str:
    """The sign-off seal as every text outlet writes it (HL7 NTE, PDF), where `audit-check --against` finds it."""
    return f"{SEAL_TEXT} {seal}"


CELL_ACTIONS = ("reclassify", "confirm", "undo", "redo")


def unexplained_cells(cells: Sequence, entries: Sequence, review_by_rule) -> list[str]:
    """The files whose final call, confirmation or Review flag does not follow from the AI call and the
    audit trail (`entries`: AuditEntry, oldest first; `review_by_rule(cell)`: the decision rule's Review
    flag for the cell's stored AI call)."""
    replayed: dict[str, tuple[str, bool | None]] = {}  # file -> (call, confirmed; None: the row does not say)
    for e in entries:
        if e.file is None:
            continue
        if e.action == "file changed":
            replayed.pop(e.file, None)
        elif e.action in CELL_ACTIONS:
            new = e.new or ""
            confirmed: bool | None = True if e.action in ("reclassify", "confirm") else None
            if new.endswith(" (confirmed)"):
                confirmed = True
            elif new.endswith(" (not confirmed)"):
                confirmed = False
            replayed[e.file] = (new.split(" (")[0], confirmed)
    wrong = []
    for c in cells:
        if c.unreadable or c.ai_class is None:
            continue
        call, confirmed = replayed.get(c.file, (c.ai_class, False))
        if c.call != call or (confirmed is not None and c.confirmed != confirmed) \
                or (c.file not in replayed and c.final_class is not None) or c.review != review_by_rule(c):
            wrong.append(c.file)
    return wrong
