"""Entry point of the frozen GUI (PyInstaller needs a script, not a console_scripts entry)."""

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before anything can load onnxruntime (desktop/__init__ sets it too)

from desktop.ui.app import main

raise SystemExit(main())
