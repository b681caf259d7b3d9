"""`slidetally-cli`: the same core as the window, without it (no Qt widgets are imported):
classify, report, verify, adapt, models and bench. `app.py` is the entry point and the exit codes."""

from desktop.cli.app import main, print_report

__all__ = ["main", "print_report"]
