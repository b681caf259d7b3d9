"""Slow: build the bundle and the .deb, unpack it into a temporary root, start the installed
app under Xvfb from its desktop entry, screenshot it, quit it, and classify with the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES

pytestmark = pytest.mark.slow


def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install xvfb xdotool imagemagick dpkg)")


@pytest.fixture(scope="module")
def deb() -> Path:
    _need("dpkg-deb")
    if os.environ.get("SLIDETALLY_REUSE_BUILD") and list((ROOT / "dist").glob("slidetally_*_amd64.deb")):
        return next((ROOT / "dist").glob("slidetally_*_amd64.deb"))
    out = subprocess.run(["bash", "installer/build.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    return next((ROOT / "dist").glob("slidetally_*_amd64.deb"))


def test_installed_app_opens_from_its_desktop_entry_and_cli_classifies(deb, tmp_path):
    _need("Xvfb", "xdotool", "import")
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    entry = (root / "usr/share/applications/slidetally.desktop").read_text()
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))[5:].replace(" %f", "")
    program = root / exec_line.lstrip("/")
    assert program.exists()
    assert not list((root / "opt/slidetally").rglob("*tensorflow*"))

    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("QT_QPA_PLATFORM", None)
    cli = subprocess.run([str(root / "opt/slidetally/slidetally-cli"), "classify", str(SAMPLES / "blood")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "40 images" in cli.stdout

    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1400x900x24", "-nolisten", "tcp"])
    try:
        env["DISPLAY"] = display
        time.sleep(1.0)
        start = time.monotonic()
        app = subprocess.Popen([str(program), str(SAMPLES / "blood")], env=env)
        window = ""
        while time.monotonic() - start < 60 and not window:
            found = subprocess.run(["xdotool", "search", "--name", "SlideTally"], env=env, capture_output=True, text=True)
            window = found.stdout.split()[0] if found.stdout.strip() else ""
            time.sleep(0.2)
        assert window, "the installed app's window did not appear"
        print(f"window visible after {time.monotonic() - start:.1f} s")
        time.sleep(8)
        shot = ROOT / "docs" / "screenshots" / "installed-app.png"
        subprocess.run(["import", "-window", "root", str(shot)], env=env, check=True, timeout=60)
        assert shot.stat().st_size > 10_000
        app.terminate()  # what a logout does; the app must close its session and exit 0
        assert app.wait(30) == 0
    finally:
        xvfb.terminate()
        xvfb.wait(10)
