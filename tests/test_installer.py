"""Slow: build the bundle and the .deb, check it with lintian, install it with dpkg into a temporary root, classify
the samples with the installed CLI (same calls as the development install), start the installed app under Xvfb
from its desktop entry, and purge it. The bundle is built without the parts installer/slidetally.spec leaves out and
with installer/build_opencv.sh's OpenCV (no video, no LAPACK), so these runs are the proof that the app never needs
them, and the calls-and-probabilities comparison that it sees the samples as the development install does."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import DATA, ROOT, SAMPLES

pytestmark = pytest.mark.slow
BUNDLE = "usr/lib/slidetally"


def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install xvfb xdotool imagemagick dpkg-dev lintian appstream "
                    "desktop-file-utils patchelf help2man man-db cmake ninja-build nasm g++ zlib1g-dev)")


@pytest.fixture(scope="module")
def deb() -> Path:
    _need("dpkg-deb", "dpkg-shlibdeps", "patchelf", "help2man", "cmake", "ninja", "nasm")
    if os.environ.get("SLIDETALLY_REUSE_BUILD") and list((ROOT / "dist").glob("slidetally_*_amd64.deb")):
        return next((ROOT / "dist").glob("slidetally_*_amd64.deb"))
    out = subprocess.run(["bash", "installer/build.sh"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    return next((ROOT / "dist").glob("slidetally_*_amd64.deb"))


@pytest.fixture(scope="module")
def installed(deb, tmp_path_factory) -> Path:
    """The .deb installed by dpkg into an empty root (its own dpkg database)."""
    if os.geteuid() != 0:
        pytest.skip("dpkg --root needs root")
    root = tmp_path_factory.mktemp("root")
    for sub in ("info", "updates", "triggers"):
        (root / "var/lib/dpkg" / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    dpkg(root, "--force-depends", "-i", str(deb))  # Depends are this machine's, not the empty root's
    return root


def dpkg(root: Path, *args: str) -> str:
    out = subprocess.run(["dpkg", f"--root={root}", "--log=/dev/null", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def control(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True, check=True).stdout.strip()


def upstream_version(deb: Path) -> str:
    """The release the package carries: its Version less the Debian revision (0.1.0-1 → 0.1.0)."""
    version, revision = control(deb, "Version").rsplit("-", 1)
    assert revision.isdigit(), "the package version has a Debian revision"
    return version


def test_deb_passes_lintian_and_declares_what_it_needs(deb, tmp_path):
    _need("lintian", "appstreamcli", "desktop-file-validate", "man")
    start = time.monotonic()
    lint = subprocess.run(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0", str(deb)],
                          capture_output=True, text=True, timeout=1200)
    print(f"lintian ({time.monotonic() - start:.0f} s):\n{lint.stdout}")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not [line for line in lint.stdout.splitlines() if line.startswith(("E:", "W:"))]

    depends = control(deb, "Depends")
    assert re.search(r"libc6 \(>= 2\.\d+\)", depends), depends  # computed by dpkg-shlibdeps from the bundle
    assert "libxcb-cursor0" in depends and "libdbus-1-3" in depends
    # NumPy links Debian's OpenBLAS (build_numpy.sh): its package is a Depends (libopenblas0, which pulls in one of
    # the pthread, openmp or serial builds), the library is not bundled.
    assert re.search(r"(^|, )libopenblas0( \(|,|$)", depends), depends
    size_mb = int(control(deb, "Installed-Size")) / 1024
    print(f"Installed-Size {size_mb:.0f} MB; Depends: {depends}")
    # 358 MB with the opencv-python-headless wheel's cv2 (FFmpeg, OpenBLAS: 152 MB); IT's limit is 250 MB, issue 42's
    # target 225 MB (229 MB with the NumPy wheel's OpenBLAS, libgfortran and libquadmath).
    assert size_mb <= 225, "the bundle grew back: see installer/build_opencv.sh, build_numpy.sh and slidetally.spec"

    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True)
    assert (root / "DEBIAN/md5sums").read_text().count("\n") > 500
    doc = root / "usr/share/doc/slidetally"
    copyright_text = (doc / "copyright").read_text()
    assert copyright_text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    assert "Relinking (LGPL)" in copyright_text
    assert "License: LGPL-3" in copyright_text  # Qt; the text is in /usr/share/common-licenses
    for text in ("opencv/LICENSE", "opencv/3rdparty/libjpeg-turbo-LICENSE.md", "opencv/3rdparty/libpng-LICENSE",
                 "opencv/3rdparty/libtiff-LICENSE.md", "opencv/3rdparty/SoftFloat-COPYING.txt",
                 "onnxruntime/onnxruntime/ThirdPartyNotices.txt", "numpy/LICENSE.txt", "fhir.resources/LICENSE",
                 "python/LICENSE", "python/license.rst", "psutil/LICENSE", "qt-third-party/libicu72/copyright"):
        assert (doc / "licenses" / text).exists(), text
    # NumPy built from source against Debian's OpenBLAS (installer/build_numpy.sh): its own texts, none of the wheel's
    # OpenBLAS or GCC runtime (the system's OpenBLAS is a Depends, with its own copyright file in /usr/share/doc)
    assert "OpenBLAS" not in (doc / "licenses/numpy/LICENSE.txt").read_text()
    assert (doc / "licenses/numpy/numpy/_core/src/highway/LICENSE").exists()
    for gone in ("OpenBLAS", "libgfortran", "libquadmath", "numpy.libs"):
        assert gone not in copyright_text and gone not in (doc / "SOURCE-OFFER").read_text(), gone
    # The About box's list (LICENSES.md, written by the build) names what the copyright file names: not flatbuffers.
    about = (root / BUNDLE / "_internal/resources/LICENSES.md").read_text()
    listed = {row.split("|")[1].strip() for row in about.splitlines()[1:] if row.startswith("| ") and "---" not in row}
    listed.discard("component")
    assert not {"flatbuffers", "setuptools"} & listed and {"numpy", "onnxruntime", "opencv", "pyinstaller"} <= listed
    assert listed == {p.name for p in (doc / "licenses").iterdir()}
    assert about == (ROOT / "resources/LICENSES.md").read_text()  # the development install's About box, the same
    assert "License: CC-BY-4.0" in copyright_text and "Md Nazrul Islam" in copyright_text
    assert (doc / "changelog.Debian.gz").exists()
    sbom = json.loads((doc / "slidetally.cdx.json").read_text())
    names = {c["name"].lower() for c in sbom["components"]}
    assert {"cpython", "qt", "opencv", "onnxruntime-native", "openslide", "numpy", "fhir.resources"} <= names
    assert control(deb, "Maintainer") == "SlideTally developers <packaging@slidetally.org>"
    assert control(deb, "Homepage") == "https://slidetally.org"
    assert "inode/directory" not in (root / "usr/share/applications/slidetally.desktop").read_text()
    for program in ("slidetally", "slidetally-cli"):  # made by help2man from the bundled program's --help
        page = subprocess.run(["man", "-l", str(root / f"usr/share/man/man1/{program}.1.gz")],
                              capture_output=True, text=True, check=True, env=dict(os.environ, MANWIDTH="100")).stdout
        assert f"usage: {program}" in page and upstream_version(deb) in page, page
    assert "adapt a model to this lab" in page  # the CLI's page carries each command's help
    for size in ("48x48", "64x64", "128x128", "256x256"):
        assert (root / f"usr/share/icons/hicolor/{size}/apps/slidetally.png").exists()
    assert (root / "usr/share/icons/hicolor/scalable/apps/slidetally.svg").exists()
    metainfo = next((root / "usr/share/metainfo").glob("*.metainfo.xml"))
    assert upstream_version(deb) in metainfo.read_text()
    subprocess.run(["appstreamcli", "validate", "--no-net", str(metainfo)], check=True)
    subprocess.run(["desktop-file-validate", str(root / "usr/share/applications/slidetally.desktop")], check=True)


def _wait_for_log(data_home: Path, text: str, timeout: float) -> None:
    """Until the installed app's log file (under its XDG data folder) says `text`: a condition wait, no sleep."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(text in log.read_text(encoding="utf-8", errors="replace") for log in data_home.rglob("slidetally.log")):
            return
        time.sleep(0.1)
    raise AssertionError(f"the app's log never said {text!r} within {timeout:.0f} s")


def test_installed_programs_are_hardened(installed):
    """The bootloader built from source (installer/build_bootloader.sh): position-independent, stack-protected,
    read-only relocations bound at load; so are the modules compiled here (cv2, NumPy's core: build_opencv.sh,
    build_numpy.sh)."""
    program = installed / BUNDLE / "slidetally"
    header = subprocess.run(["readelf", "-h", str(program)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Type:\s+DYN", header), header
    if shutil.which("hardening-check"):
        report = subprocess.run(["hardening-check", "--nocfprotection", str(program)],
                                capture_output=True, text=True)
        assert report.returncode == 0, report.stdout
    cv2 = next((installed / BUNDLE / "_internal/cv2").rglob("cv2*.so"))
    dynamic = subprocess.run(["readelf", "-d", "-l", str(cv2)], capture_output=True, text=True, check=True).stdout
    assert "GNU_RELRO" in dynamic and "BIND_NOW" in dynamic
    # The NumPy wheel's modules are linked without BIND_NOW; build_numpy.sh's with Debian's flags.
    numpy_core = next((installed / BUNDLE / "_internal/numpy/_core").glob("_multiarray_umath*.so"))
    dynamic = subprocess.run(["readelf", "-W", "-d", "-l", "--dyn-syms", str(numpy_core)], capture_output=True,
                             text=True, check=True).stdout
    assert "GNU_RELRO" in dynamic and "BIND_NOW" in dynamic and "__stack_chk_fail" in dynamic
    assert "_chk@" in dynamic  # FORTIFY_SOURCE's checked libc calls
    # It needs the system's libopenblas.so.0 (Debian's, a Depends), not the wheel's libscipy_openblas, and has no
    # RUNPATH: the loader finds the library where Debian's alternatives put it.
    assert "libscipy_openblas" not in dynamic and "[libopenblas.so.0]" in dynamic
    assert "RUNPATH" not in dynamic and "RPATH" not in dynamic


def test_the_bundled_python_is_debians_source_hardened(installed):
    """The runtime built by installer/build_python.sh (issue 42): libpython stack-protected, read-only relocations
    bound at load; no readline or curses module; expat, SQLite and OpenSSL are the system's (Depends), not copies."""
    internal = installed / BUNDLE / "_internal"
    libpython = next(internal.glob("libpython3*.so*"))
    dynamic = subprocess.run(["readelf", "-W", "-d", "-l", "--dyn-syms", str(libpython)], capture_output=True, text=True,
                             check=True).stdout
    assert "BIND_NOW" in dynamic and "GNU_RELRO" in dynamic and "__stack_chk_fail" in dynamic
    assert "libexpat.so.1" in dynamic  # pyexpat is built in and links the system's expat
    if shutil.which("hardening-check"):
        report = subprocess.run(["hardening-check", "--nocfprotection", str(libpython)],
                                capture_output=True, text=True)
        assert report.returncode == 0, report.stdout
    names = {p.name.split(".")[0] for p in internal.rglob("*.so")}
    assert not names & {"readline", "_curses", "_curses_panel", "_sqlite3_bundled"}
    assert not [p for p in internal.rglob("*") if p.name.startswith(("libexpat", "libsqlite3", "libssl", "libreadline"))]


def test_the_bill_of_materials_names_every_bundled_library_with_its_version(installed, deb):
    """Every shared library of the installed bundle is named by a component of the installed SBOM, every component
    has a version, and nothing is listed that is not shipped; the licences and contacts IT asked for are there."""
    doc = installed / "usr/share/doc/slidetally"
    check = subprocess.run([sys.executable, str(ROOT / "installer/sbom.py"), "--check", str(installed / BUNDLE),
                            str(doc / "slidetally.cdx.json")], capture_output=True, text=True, cwd=ROOT / "installer")
    assert check.returncode == 0, check.stdout + check.stderr
    sbom = json.loads((doc / "slidetally.cdx.json").read_text())
    names = {c["name"].lower() for c in sbom["components"]}
    assert "flatbuffers" not in names and "setuptools" not in names
    parts = names | {sub["name"].lower() for c in sbom["components"] for sub in c.get("components", [])}
    assert "libmpdec" in parts
    # NumPy from source against Debian's OpenBLAS (issue 42): a system library and a Depends, so not listed, like libc
    assert not {"openblas", "libquadmath", "libgfortran"} & parts
    internal = installed / BUNDLE / "_internal"
    assert not (internal / "pillow.libs").exists()  # Pillow from source links the system's zlib and Little CMS
    assert not (internal / "numpy.libs").exists()  # NumPy from source: no bundled OpenBLAS, libgfortran, libquadmath
    assert not [p for p in internal.rglob("*") if p.name.startswith(("libscipy_openblas", "libopenblas", "libblas",
                                                                     "liblapack", "libgfortran", "libquadmath"))]
    assert not list(internal.glob("setuptools*")) and not list(internal.glob("pkg_resources*"))
    licences = doc / "licenses"
    assert "libmpdec" in (licences / "python" / "license.rst").read_text()
    assert "dlpack-LICENSE" in " ".join(p.name for p in (licences / "opencv").rglob("*"))
    copyright_text = (doc / "copyright").read_text()
    assert "Apache-2.0 (dlpack)" in copyright_text and "BSD-3-Clause (SoftFloat)" in copyright_text
    assert "Upstream-Contact:" in copyright_text and "security@slidetally.org" in (doc / "SECURITY.md").read_text()
    assert "three years" in (doc / "SOURCE-OFFER").read_text()


def test_installed_cli_reads_a_whole_slide_as_the_development_install_does(installed, tmp_path):
    from slides import patient_slide

    patient = DATA / "idc" / "8917"
    if not patient.is_dir():
        pytest.skip("the IDC data is not here")
    slide, _ = patient_slide(patient, tmp_path / "window.tif", upsample=16, mpp=0.25, window=(13, 15, 8))
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "bundle-data"))
    env.pop("QT_QPA_PLATFORM", None)
    bundle = subprocess.run([str(installed / "usr/bin/slidetally-cli"), "classify", str(slide), "--model", "breast-idc",
                             "--csv", str(tmp_path / "bundle.csv")], env=env, capture_output=True, text=True, timeout=300)
    assert bundle.returncode == 0, bundle.stderr
    env["XDG_DATA_HOME"] = str(tmp_path / "dev-data")
    dev = subprocess.run([sys.executable, "-c", "from desktop.cli import main; raise SystemExit(main())", "classify",
                          str(slide), "--model", "breast-idc", "--csv", str(tmp_path / "dev.csv")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert dev.returncode == 0, dev.stderr
    rows = _rows(tmp_path / "bundle.csv")
    assert len(rows) > 30 and rows == _rows(tmp_path / "dev.csv")


def _rows(path: Path) -> list[list[str]]:
    """The per-image rows of an export (comment lines carry the time and the software version)."""
    with path.open(encoding="utf-8-sig") as f:
        return [row for row in csv.reader(line for line in f if not line.startswith("#"))]


@pytest.mark.parametrize("sample, count", [("blood", 40), ("breast-idc-9022", 517)])
def test_installed_cli_gives_the_development_install_calls(deb, installed, tmp_path, sample, count):
    folder = SAMPLES / sample
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "bundle-data"))
    env.pop("QT_QPA_PLATFORM", None)
    cli = subprocess.run([str(installed / "usr/bin/slidetally-cli"), "classify", str(folder), "--csv",
                          str(tmp_path / "bundle.csv")], env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert f"{count} images" in cli.stdout
    version = subprocess.run([str(installed / "usr/bin/slidetally-cli"), "--version"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert version.stdout == f"slidetally-cli {upstream_version(deb)}\n", version.stdout + version.stderr
    env["XDG_DATA_HOME"] = str(tmp_path / "dev-data")
    dev = subprocess.run([sys.executable, "-c", "from desktop.cli import main; raise SystemExit(main())", "classify",
                          str(folder), "--csv", str(tmp_path / "dev.csv")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert dev.returncode == 0, dev.stderr
    assert _rows(tmp_path / "bundle.csv") == _rows(tmp_path / "dev.csv")


def test_installed_app_opens_from_its_desktop_entry_offline(installed, tmp_path):
    _need("Xvfb", "xdotool", "import")
    entry = (installed / "usr/share/applications/slidetally.desktop").read_text()
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))[5:].replace(" %f", "")
    program = installed / "usr/bin" / exec_line
    assert program.exists()
    internal = installed / BUNDLE / "_internal"
    assert not list(internal.rglob("*tensorflow*"))
    for left_out in ("libQt6Network*", "libqwayland*", "libqgtk3*", "libqeglfs*", "libqvnc*", "libX11*", "libgtk*",
                     "libavcodec*", "libopenblas*", "libscipy_openblas*", "libgfortran*", "libquadmath*", "numpy.libs",
                     "opencv_python_headless.libs",
                     "Cython", "mesonpy"):  # NumPy's build requirements stay in the build venv
        assert not list(internal.rglob(left_out)), left_out

    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"))
    env.pop("QT_QPA_PLATFORM", None)
    # Xvfb picks a free display and writes its number to the pipe once it accepts connections: no sleep, no race.
    ready, write_end = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,))
    os.close(write_end)
    try:
        with os.fdopen(ready) as pipe:
            env["DISPLAY"] = f":{pipe.readline().strip()}"
        start = time.monotonic()
        app = subprocess.Popen([str(program), str(SAMPLES / "blood")], env=env)
        window = ""
        while time.monotonic() - start < 60 and not window:
            found = subprocess.run(["xdotool", "search", "--name", "SlideTally"], env=env, capture_output=True, text=True)
            window = found.stdout.split()[0] if found.stdout.strip() else ""
            time.sleep(0.05)
        assert window, "the installed app's window did not appear"
        print(f"window visible after {time.monotonic() - start:.2f} s")
        _wait_for_log(tmp_path / "data", "item(s) classified with", timeout=60)  # the samples are classified
        # Offline: after classifying, the app holds no internet socket (only its X11 connection).
        assert psutil.Process(app.pid).net_connections(kind="inet") == []
        mapped = {Path(m.path).name for m in psutil.Process(app.pid).memory_maps()}
        print(f"{len(mapped)} files mapped, none of them left out: {sorted(n for n in mapped if 'Qt6' in n)}")
        shot = tmp_path / "installed-app.png"  # not the tracked docs/screenshots/ copy
        subprocess.run(["import", "-window", "root", str(shot)], env=env, check=True, timeout=60)
        assert shot.stat().st_size > 10_000
        app.terminate()  # what a logout does; the app must close its session and exit 0
        assert app.wait(30) == 0
    finally:
        xvfb.terminate()
        xvfb.wait(10)


def test_purge_leaves_nothing_behind(installed):
    dpkg(installed, "-P", "slidetally")
    left = [p for p in installed.rglob("*") if not p.is_dir() and "var/lib/dpkg" not in p.as_posix()]
    assert left == []
    assert not (installed / BUNDLE).exists()
