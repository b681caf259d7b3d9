"""Entry point of the frozen CLI."""

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before ONNX Runtime is imported: the app never phones home

from desktop.cli import main  # noqa: E402

raise SystemExit(main())
