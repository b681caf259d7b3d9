"""Entry point of the frozen GUI (PyInstaller needs a script, not a console_scripts entry)."""

import multiprocessing
import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before anything can load onnxruntime (desktop/__init__ sets it too)

# The whole-slide helper processes are spawned: in a frozen program each starts this executable again, and
# freeze_support() runs it as that helper (then exits) instead of as another window or CLI.
multiprocessing.freeze_support()

from desktop.ui.app import main  # noqa: E402 - after freeze_support()

raise SystemExit(main())
