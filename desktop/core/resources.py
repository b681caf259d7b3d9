"""Where the bundled resources are: beside the sources, or inside a PyInstaller bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs

APP_NAME = "SlideTally"


def resource_root() -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def resource(*parts: str) -> Path:
    return resource_root().joinpath(*parts)


def user_data_dir() -> Path:
    path = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def user_models_dir() -> Path:
    """Where site models live; not created here (listing models must work on a read-only home)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"
