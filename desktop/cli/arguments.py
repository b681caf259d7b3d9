"""What the command line refuses, in one sentence, and where it keeps sessions."""

from __future__ import annotations

from pathlib import Path

from desktop.core.errors import SlideTallyError


class CliError(SlideTallyError):
    """A refused command line, in one sentence."""


class NothingToDo(SlideTallyError):
    """Nothing to list or classify: not an error, but not a result either (exit 1)."""


def data_dir(args) -> Path:
    """--data-dir, or the user data folder."""
    from desktop.core.resources import user_data_dir

    return Path(args.data_dir) if args.data_dir else user_data_dir()
