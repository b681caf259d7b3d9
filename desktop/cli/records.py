"""`slidetally-cli audit-check [FOLDER|SESSION]`: is each stored record what SlideTally wrote?"""

from __future__ import annotations

import argparse
from pathlib import Path

from desktop.cli.arguments import CliError, data_dir
from desktop.core.names import readable
from desktop.core.records.integrity import ALTERED
from desktop.core.records.store import check_session_file, session_files, session_path

DONE, ALTERED_EXIT = 0, 2


def _sessions_of(target: Path, root: Path) -> list[Path]:
    """A session file itself; a folder's sessions (every model's); or, with no target, all of them."""
    if target.suffix == ".sqlite" and target.is_file():
        return [target]
    if not target.is_dir():
        raise CliError(f"{readable(str(target))} is neither an analysed folder nor a session file")
    prefix = session_path(root, target, "").name.removesuffix(".sqlite")  # "<folder digest>-"
    found = [p for p in session_files(root) if p.name.startswith(prefix)]
    if not found:
        raise CliError(f"no stored session for {readable(str(target))} in {root}")
    return found


def cmd_audit_check(args: argparse.Namespace) -> int:
    """Check the audit chain and the sign-off seal of one or every session; exit 2 if any was altered."""
    root = data_dir(args)
    paths = _sessions_of(Path(args.target), root) if args.target else session_files(root)
    if not paths:
        print(f"no sessions in {root}")
        return DONE
    altered = 0
    for path in paths:
        try:
            problems = check_session_file(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, the others are still checked
            problems = [f"cannot be read ({type(exc).__name__}: {exc})"]
        if problems:
            altered += 1
            print(f"ALTERED  {path.name}: {ALTERED}: {'; '.join(problems)}")
        else:
            print(f"ok       {path.name}")
    print(f"{len(paths)} session(s) checked, {altered} altered")
    return ALTERED_EXIT if altered else DONE
