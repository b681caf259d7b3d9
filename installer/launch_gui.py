"""Entry point of the frozen GUI (PyInstaller needs a script, not a console_scripts entry)."""

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before ONNX Runtime is imported: the app never phones home

from desktop.ui.app import main  # noqa: E402

raise SystemExit(main())
