#!/usr/bin/env bash
# Set up .venv (the app only, no TensorFlow) if needed, then open SlideTally on the bundled samples.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/slidetally "${@:-resources/samples/blood}"
