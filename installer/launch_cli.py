"""Entry point of the frozen CLI."""

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before anything can load onnxruntime (desktop/__init__ sets it too)

from desktop.cli import main

raise SystemExit(main())
