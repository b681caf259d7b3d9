"""Entry point of the frozen programs on Linux: one executable, and `slidetally-cli` a link to it, so both programs
share one Python archive (the name it was started by picks the program). Windows and macOS keep two executables
(a console and a windowed one)."""

import os
import sys

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before anything can load onnxruntime (desktop/__init__ sets it too)

if os.path.basename(sys.argv[0]).removesuffix(".exe") == "slidetally-cli":
    from desktop.cli import main
else:
    from desktop.ui.app import main

raise SystemExit(main())
