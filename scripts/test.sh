#!/usr/bin/env bash
# Set up .venv (app + trainer + dev extras) if needed, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[trainer,dev]"
# Lint first (ruff comes with the dev extra installed above): a finding fails the run before a test starts.
.venv/bin/ruff check .
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
# pytest exits 5 when no test ran: that is a failure here too.
.venv/bin/python -m pytest -m "not slow" "$@"
