"""The app's log file: the GUI and the CLI write the core's log (sessions opened, classified,
signed off; models loaded; sessions kept aside) to one rotating file in the user data folder."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from desktop.core.resources import user_data_dir

LOG_NAME = "slidetally.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_file() -> Path:
    return user_data_dir() / LOG_NAME


def log_to_file(level: int = logging.INFO) -> Path | None:
    """Send every logger's records to the log file; None when the data folder cannot be written
    (the caller then decides whether the terminal gets them instead)."""
    try:
        path = log_file()
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8",
                                                       errors="backslashreplace")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    return path
