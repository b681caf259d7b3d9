"""Where the bundled resources are: beside the sources, or inside a PyInstaller bundle."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import platformdirs

APP_NAME = "SlideTally"
PRIVATE_DIR = 0o700  # sessions and logs hold specimen and patient IDs: only their owner may enter


def resource_root() -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def resource(*parts: str) -> Path:
    return resource_root().joinpath(*parts)


def private_dir(path: Path) -> Path:
    """Create a folder only its owner can enter, or tighten one an older version made 0755."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # not ours, or read-only: the files inside are 0600 all the same
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_DIR)
    return path


def user_data_dir() -> Path:
    return private_dir(Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)))


def user_models_dir() -> Path:
    """Where site models live; not created here (listing models must work on a read-only home)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"
