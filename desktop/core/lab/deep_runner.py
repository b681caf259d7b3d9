"""The app's side of deep site adaptation: find `slidetally-train`, build its command line, read
its progress. The app never imports TensorFlow; the trainer runs as a separate process, writes
an unapproved candidate, and the app installs it on approval (`site_install`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path


def trainer_command() -> list[str] | None:
    """How to start the trainer here, or None when it is not installed (the packaged app, or an
    install without the `trainer` extra: its `slidetally-train` script exists but has no TensorFlow)."""
    if getattr(sys, "frozen", False) or importlib.util.find_spec("tensorflow") is None:
        return None
    beside = Path(sys.executable).with_name("slidetally-train")
    for candidate in (beside, beside.with_suffix(".exe")):
        if candidate.is_file():
            return [str(candidate)]
    if importlib.util.find_spec("trainer") is not None:
        return [sys.executable, "-m", "trainer.cli"]
    return None


def deep_adapt_arguments(base: Path, site: str, candidate: Path, models_dir: Path,
                         verified: Path | None = None, sessions: Path | None = None) -> list[str]:
    """Arguments after the trainer command: exactly one of `verified` (folder) or `sessions` (data folder)."""
    source = ["--verified", str(verified)] if verified is not None else ["--sessions", str(sessions)]
    return ["adapt", "--base", str(base), *source, "--site", site, "--candidate", str(candidate),
            "--models-dir", str(models_dir), "--progress-json"]  # the lab book row goes to the lab's data folder


@dataclass(frozen=True)
class TrainerLine:
    """One line of the trainer's `--progress-json` output."""

    stage: str = ""
    fraction: float = 0.0
    eta_s: float | None = None
    done: str = ""  # the candidate's path, on the last line
    report: dict | None = None


def parse_trainer_line(line: str) -> TrainerLine | None:
    """A progress or done line; None for anything else (library chatter on stdout)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "done" in data:
        return TrainerLine(stage="done", fraction=1.0, done=str(data["done"]), report=data.get("report"))
    if "stage" in data:
        return TrainerLine(str(data["stage"]), float(data.get("fraction", 0.0)), data.get("eta_s"))
    return None
