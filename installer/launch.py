"""Entry point of the frozen programs on Linux: one executable, and `slidetally-cli` a link to it, so both programs
share one Python archive (the name it was started by picks the program). Windows and macOS keep two executables
(a console and a windowed one)."""

import multiprocessing
import os
import sys

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before anything can load onnxruntime (desktop/__init__ sets it too)

# The whole-slide helper processes are spawned: in a frozen program each starts this executable again, and
# freeze_support() runs it as that helper (then exits) instead of as another window or CLI.
multiprocessing.freeze_support()

if os.path.basename(sys.argv[0]).removesuffix(".exe") == "slidetally-cli":
    from desktop.cli import main
else:
    from desktop.ui.app import main

raise SystemExit(main())
