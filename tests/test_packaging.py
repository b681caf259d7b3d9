"""Fast checks of the installer sources: one version, telemetry off before ONNX Runtime loads, a valid desktop entry
and AppStream file. The slow tests/test_installer.py builds and installs the real thing."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT

import desktop

INSTALLER = ROOT / "installer"


def test_version_is_written_only_in_pyproject():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert desktop.__version__ == version
    iss = (INSTALLER / "slidetally.iss").read_text()
    assert "#define AppVersion" not in iss and version not in iss  # iscc /DAppVersion=... passes it
    assert "EncodeVer(6, 3, 0)" in iss  # x64compatible needs Inno Setup 6.3
    for name in ("build.sh", "slidetally.spec", "slidetally.metainfo.xml"):
        assert version not in (INSTALLER / name).read_text(), name


@pytest.mark.parametrize("program, entry", [("slidetally", "desktop.ui.app"), ("slidetally-cli", "desktop.cli")])
def test_both_programs_answer_version_and_help_without_a_display(program, entry, tmp_path):
    """IT checks an installed version with --version, and help2man builds the manual pages from --help and
    --version: neither may need a display, or open a window."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}  # no DISPLAY
    run = [sys.executable, "-c", f"from {entry} import main; raise SystemExit(main())"]
    for flag, expected in (("--version", f"{program} {desktop.__version__}\n"), ("--help", f"usage: {program}")):
        out = subprocess.run([*run, flag], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(expected), out.stdout
    assert not (tmp_path / "data").exists()  # nothing started: no log file, no session store


@pytest.mark.parametrize("launcher", ["launch.py", "launch_gui.py", "launch_cli.py"])
def test_frozen_launchers_disable_onnxruntime_telemetry_before_importing_the_app(launcher):
    body = ast.parse((INSTALLER / launcher).read_text()).body
    first_import = next(i for i, node in enumerate(body) for sub in ast.walk(node)
                        if isinstance(sub, ast.ImportFrom) and sub.module.startswith("desktop"))
    setting = next(i for i, node in enumerate(body) if "ORT_DISABLE_TELEMETRY" in ast.unparse(node))
    assert setting < first_import
    assert "= '1'" in ast.unparse(body[setting])


def test_desktop_entry_is_no_folder_handler_under_one_main_category():
    entry = (INSTALLER / "slidetally.desktop").read_text()
    categories = re.search(r"^Categories=(.*)$", entry, re.M).group(1).strip(";").split(";")
    main = {"AudioVideo", "Audio", "Video", "Development", "Education", "Game", "Graphics", "Network", "Office",
            "Science", "Settings", "System", "Utility"}
    assert len(main.intersection(categories)) == 1
    # A MimeType of inode/directory made SlideTally the folder handler where no file manager claims it (issue 32);
    # "Open with SlideTally" is a file-manager action instead (installer/filemanager/).
    assert "MimeType" not in entry and "inode/directory" not in entry
    assert "Open with SlideTally" in (INSTALLER / "filemanager/slidetally-open-folder.desktop").read_text()
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(INSTALLER / "slidetally.desktop")], check=True)


def test_metainfo_is_valid_appstream(tmp_path):
    if not shutil.which("appstreamcli"):
        pytest.skip("needs appstreamcli (apt-get install appstream)")
    filled = tmp_path / "org.slidetally.SlideTally.metainfo.xml"
    filled.write_text((INSTALLER / "slidetally.metainfo.xml").read_text().replace("@VERSION@", desktop.__version__)
                      .replace("@DATE@", "2026-01-01"))
    subprocess.run(["appstreamcli", "validate", "--no-net", str(filled)], check=True)


def test_debian_changelog_comes_from_the_release_notes(tmp_path):
    sys.path.insert(0, str(INSTALLER))
    from changelog import debian_changelog

    notes = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    text = debian_changelog(notes, desktop.__version__, "SlideTally developers <packaging@slidetally.org>", "2")
    # the package's version carries the Debian revision (a rebuild of the same release is -2, -3...)
    assert text.startswith(f"slidetally ({desktop.__version__}-2) unstable; urgency=medium\n\n  * ")
    assert text.count("\n  * ") >= 3 and "example.org" not in text
    with pytest.raises(ValueError, match="no section"):
        debian_changelog(notes, "99.0.0", "x <x@x>")
    if shutil.which("dpkg-parsechangelog"):
        changelog = tmp_path / "changelog"
        changelog.write_text(text, encoding="utf-8")
        parsed = subprocess.run(["dpkg-parsechangelog", "-l", str(changelog)], capture_output=True, text=True, check=True)
        assert f"Version: {desktop.__version__}-2\n" in parsed.stdout
