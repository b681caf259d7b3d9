"""`slidetally-cli audit-check [FOLDER|SESSION] [--against FILE]`: is each stored record what SlideTally
wrote, and (with --against) what the LIS was sent?"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from desktop.cli.arguments import CliError, data_dir
from desktop.core.names import readable
from desktop.core.records.integrity import ALTERED, SEAL_PATTERN
from desktop.core.records.store import check_session_file, seal_of_session_file, session_files, session_path

DONE, ALTERED_EXIT, UNREADABLE_EXIT = 0, 2, 3
MAX_MESSAGE_BYTES = 50 * 2**20  # a delivered message, Bundle or sidecar: never a whole disk image


def _sessions_of(target: Path, root: Path) -> list[Path]:
    """A session file itself; a folder's sessions (every model's, archived ones too); or, with no target, all."""
    if target.suffix == ".sqlite" and target.is_file():
        return [target]
    if not target.is_dir():
        raise CliError(f"{readable(str(target))} is neither an analysed folder nor a session file")
    prefix = session_path(root, target, "").name.removesuffix(".sqlite")  # "<folder digest>-"
    found = [p for p in session_files(root, archived=True) if p.name.startswith(prefix)]
    if not found:
        raise CliError(f"no stored session for {readable(str(target))} in {root}")
    return found


def delivered_seals(path: Path) -> set[str]:
    """Every record seal a delivered file carries: a FHIR Bundle's seal identifier, a CSV sidecar's "seal", or
    the seal line of an HL7 message or any text."""
    try:
        if path.stat().st_size > MAX_MESSAGE_BYTES:
            raise CliError(f"{readable(str(path))} is larger than any message SlideTally sends")
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {readable(str(path))} ({exc.strerror or exc})") from exc
    text = data.decode("utf-8-sig", errors="replace")
    seals = set(SEAL_PATTERN.findall(text))
    try:
        document = json.loads(text)
    except ValueError:
        return seals
    if isinstance(document, dict):
        if isinstance(document.get("seal"), str) and document["seal"]:
            seals.add(document["seal"])
        for entry in document.get("entry", []) if isinstance(document.get("entry"), list) else []:
            resource = entry.get("resource", {}) if isinstance(entry, dict) else {}
            for identifier in resource.get("identifier", []) if isinstance(resource, dict) else []:
                if isinstance(identifier, dict) and identifier.get("system") == "urn:slidetally:seal":
                    seals.add(str(identifier.get("value", "")))
    return seals


def _check_against(paths: list[Path], against: Path) -> int:
    seals = delivered_seals(against)
    if not seals:
        raise CliError(f"{readable(str(against))} holds no SlideTally record seal (a report sent before sign-off "
                       "carries none)")
    for path in paths:
        try:
            now = seal_of_session_file(path)
        except (sqlite3.Error, OSError) as exc:
            print(f"cannot be read  {path.name}: {exc}")
            return UNREADABLE_EXIT
        if now and now in seals:
            problems = check_session_file(path)
            if problems:
                print(f"ALTERED  {path.name}: {ALTERED}: {'; '.join(problems)}")
                return ALTERED_EXIT
            print(f"ok       {path.name}: the record matches the seal of {against.name}")
            return DONE
    print(f"ALTERED  the record does not match {against.name}: it was changed after that message was sent (or "
          "re-signed after a reopen, or the message belongs to another session)")
    return ALTERED_EXIT


def cmd_audit_check(args: argparse.Namespace) -> int:
    """Check the schema, audit chain and sign-off seal of one or every session; exit 2 if any was altered,
    3 if one could not be read (a read error is never called an alteration)."""
    root = data_dir(args)
    paths = _sessions_of(Path(args.target), root) if args.target else session_files(root, archived=True)
    if getattr(args, "against", None):
        if not paths:
            raise CliError(f"no sessions in {root}")
        return _check_against(paths, Path(args.against))
    if not paths:
        print(f"no sessions in {root}")
        return DONE
    altered = unreadable = 0
    for path in paths:
        try:
            problems = check_session_file(path)
        except (sqlite3.Error, OSError) as exc:  # a full disk, a lock, a permission: not an alteration
            unreadable += 1
            print(f"cannot be read  {path.name}: {exc}")
            continue
        if problems:
            altered += 1
            print(f"ALTERED  {path.name}: {ALTERED}: {'; '.join(problems)}")
        else:
            print(f"ok       {path.name}")
    print(f"{len(paths)} session(s) checked, {altered} altered" + (f", {unreadable} could not be read" if unreadable
                                                                  else ""))
    return ALTERED_EXIT if altered else UNREADABLE_EXIT if unreadable else DONE
