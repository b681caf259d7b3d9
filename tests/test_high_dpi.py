"""A 1366x768 laptop screen at 150 % (issue 29, item 8): the window and every dialog fit, with
their buttons on the screen. Qt reads the scale factor at start, so the probe runs in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SCREEN = {"synchronousWindowSystemEvents": False, "windowFrameMargins": False,
          "screens": [{"name": "laptop", "x": 0, "y": 0, "width": 1366, "height": 768, "logicalDpi": 96,
                       "logicalBaseDpi": 96, "dpr": 1}]}


@pytest.mark.parametrize("scale", ["1.5", "1"])
def test_window_and_dialogs_fit_a_small_screen(tmp_path, scale):
    config = tmp_path / "screen.json"
    config.write_text(json.dumps(SCREEN))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={config}", "QT_SCALE_FACTOR": scale,
           "XDG_DATA_HOME": str(tmp_path / "xdg"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    run = subprocess.run([sys.executable, str(HERE / "hidpi_probe.py")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["problems"] == [], "\n".join(result["problems"])
