"""Hostile files and hostile machines: nothing hangs, crashes, leaks or calls home.

Every CLI run here has a 4 GB address-space cap, so a regression fails instead of eating the
machine. Tests that need permissions to bite drop root with setpriv."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_tiny_model, open_window
from hostile import (
    FORMULA_NAMES,
    NON_UTF8_DIR,
    NON_UTF8_FILE,
    capped,
    cli,
    make_bad_model,
    make_bomb_folder,
    make_hostile_folder,
    png,
    run_measured,
)

from desktop.core.report.session_report import session_report

OPERATOR = '=HYPERLINK("http://x","click")'


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def body(rows: list[list[str]], first: str) -> dict[str, dict[str, str]]:
    at = next(i for i, r in enumerate(rows) if r and r[0] == first)
    return {r[0]: dict(zip(rows[at], r)) for r in rows[at + 1:] if r}


def home_env(home: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORT_", "OPENCV_", "XDG_"))}
    return {**env, "HOME": str(home), **extra}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One CLI run over the hostile folder (under umask 022), its exports, and a second run."""
    root = tmp_path_factory.mktemp("hostile")
    folder, expect = make_hostile_folder(root)
    model = make_tiny_model(root / "tiny.onnx")
    data, out = root / "data", root / "out"
    out.mkdir()
    env = home_env(root / "home")
    start = time.monotonic()
    first = cli("classify", folder, "--model", model, "--data-dir", data, "--csv", out / "cells.csv",
                "--summary", out / "summary.csv", "--operator", OPERATOR, "--specimen", "+1-2", timeout=90, env=env,
                preexec=lambda: os.umask(0o022))
    took = time.monotonic() - start
    second = cli("classify", folder, "--model", model, "--data-dir", data, timeout=90, env=env)
    return {"folder": folder, "expect": expect, "model": model, "data": data, "out": out, "first": first,
            "second": second, "took": took}


def test_pipes_devices_and_links_become_rows_and_the_run_ends(hostile_run):
    first = hostile_run["first"]
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Traceback" not in first.stderr
    assert hostile_run["took"] < 60
    cells = body(read_csv(hostile_run["out"] / "cells.csv"), "file")
    for name in ("x.jpg", "z.jpg", "dangling.jpg", "loop.jpg", "linkdir/"):
        assert cells[name]["unreadable"].startswith(hostile_run["expect"][name]), (name, cells[name]["unreadable"])
    assert cells["good_0.png"]["ai_class"] and not cells["good_0.png"]["unreadable"]


def test_everything_left_out_has_a_row_and_a_count_per_reason(hostile_run):
    cells = body(read_csv(hostile_run["out"] / "cells.csv"), "file")
    for name, reason in hostile_run["expect"].items():
        assert cells[name]["unreadable"].startswith(reason), (name, cells[name]["unreadable"])
    assert ".hidden.png" not in cells  # hidden files are the one thing skipped silently
    summary = read_csv(hostile_run["out"] / "summary.csv")
    left_out = {r[1]: int(r[3]) for r in summary if r and r[0] == "left_out"}
    assert left_out["not a regular file"] == 2 and left_out["broken link"] == 2
    assert left_out["unsupported format: GIF"] == 1 and left_out["unsupported format: WebP"] == 1
    assert left_out["path too long"] == 1 and left_out["link to a folder"] == 1 and left_out["not an image"] == 1
    totals = {r[1]: int(r[3]) for r in summary if r and r[0] == "total"}
    assert totals["unreadable"] == sum(left_out.values())
    assert "left out: " in hostile_run["first"].stdout and "2 not a regular file" in hostile_run["first"].stdout


def test_names_that_are_not_utf8_are_stored_losslessly_and_read_again(hostile_run):
    from desktop.core.inference.imaging import load_image
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session

    second = hostile_run["second"]
    assert second.returncode == 0, second.stderr[-2000:]
    assert "0 classified now" in second.stdout  # the rerun found every name it had stored
    session = Session.open(hostile_run["folder"], Model(hostile_run["model"]), hostile_run["data"])
    try:
        cells = {c.file: c for c in session.cells()}
    finally:
        session.close()
    for name in (NON_UTF8_FILE, f"{NON_UTF8_DIR}/cell.png"):
        assert cells[name].ai_class and not cells[name].unreadable, name  # classified like any other file
        assert load_image(hostile_run["folder"] / name).shape == (24, 24, 3)  # opens again from the stored name
    exported = body(read_csv(hostile_run["out"] / "cells.csv"), "file")
    assert "caf\\xe9.png" in exported and "d\\xffir/cell.png" in exported  # shown readably


def test_csv_cells_a_spreadsheet_would_run_are_escaped(hostile_run):
    for name in ("cells.csv", "summary.csv"):
        rows = read_csv(hostile_run["out"] / name)
        for row in rows:
            for cell in row:
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    assert cell.lstrip("+-").replace(".", "", 1).isdigit(), f"{name}: {cell!r} would run as a formula"
    identity = {r[1]: r[5] for r in read_csv(hostile_run["out"] / "summary.csv") if r and r[0] == "identity"}
    assert identity["exported_by"] == "'" + OPERATOR and identity["specimen_id"] == "'+1-2"
    exported = body(read_csv(hostile_run["out"] / "cells.csv"), "file")
    for name in FORMULA_NAMES:
        assert "'" + name in exported, name


def test_exports_honour_the_umask(hostile_run):
    for name in ("cells.csv", "summary.csv"):
        assert stat.S_IMODE((hostile_run["out"] / name).stat().st_mode) == 0o644, name


def test_audit_csv_escapes_formulas_too(tmp_path, tiny_model):
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    from desktop.outlets.csv import export_audit_csv

    folder = tmp_path / "f"
    folder.mkdir()
    png(folder / "=cmd.png")
    session = Session.open(folder, Model(tiny_model), tmp_path / "data")
    session.classify()
    session.reclassify(["=cmd.png"], "b", "@evil")
    export_audit_csv(session.audit(), tmp_path / "audit.csv", session.record(), "now")
    session.close()
    flat = [c for row in read_csv(tmp_path / "audit.csv") for c in row]
    assert "'@evil" in flat and "'=cmd.png" in flat and "@evil" not in flat


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges, so permissions would not bite")
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def open_tmp():
    """A temporary folder an unprivileged user can reach (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="slidetally-hostile-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _world_readable(*paths: Path) -> None:
    for path in paths:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_unreadable_subfolder_is_a_row_for_an_unprivileged_user(open_tmp):
    wrap = _unprivileged()
    folder = open_tmp / "slide"
    (folder / "locked").mkdir(parents=True)
    for i in range(3):
        png(folder / f"cell_{i}.png", i)
    png(folder / "locked" / "hidden_from_us.png", 9)
    model = make_tiny_model(open_tmp / "tiny.onnx")
    _world_readable(folder, model)
    (folder / "locked").chmod(0o700)
    data = open_tmp / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    reports = open_tmp / "reports"  # outputs never go into the data folder
    reports.mkdir(mode=0o777)
    reports.chmod(0o777)
    out = cli("classify", folder, "--model", model, "--data-dir", data, "--summary", reports / "s.csv", wrap=wrap,
              env=home_env(data))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 folder not readable" in out.stdout
    summary = read_csv(reports / "s.csv")
    assert ["left_out", "folder not readable", "", "1"] in [row[:4] for row in summary]


def test_read_only_data_folder_is_one_clear_line(open_tmp):
    wrap = _unprivileged()
    folder = open_tmp / "slide"
    folder.mkdir()
    png(folder / "cell.png")
    model = make_tiny_model(open_tmp / "tiny.onnx")
    _world_readable(folder, model)
    data = open_tmp / "data"
    data.mkdir(mode=0o755)  # owned by root: read-only for nobody
    out = cli("classify", folder, "--model", model, "--data-dir", data / "sub", wrap=wrap, env=home_env(data))
    assert out.returncode == 3, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "read-only" in out.stderr and "Traceback" not in out.stderr


DISK_FULL = """
mount -t tmpfs -o size=160k tmpfs "$DATA" || exit 99
"$@" >"$OUT/1.out" 2>"$OUT/1.err"; echo $? >"$OUT/1.rc"
mount -o remount,size=64m "$DATA"
"$@" >"$OUT/2.out" 2>"$OUT/2.err"; echo $? >"$OUT/2.rc"
"""


def test_disk_full_is_one_clear_line_and_keeps_what_was_saved(tmp_path, tiny_model):
    """The data folder is a 160 kB tmpfs of the run's own (a mount namespace); then it grows and
    a second run must find the first run's calls. Without mount rights, a file-size limit instead."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(1500):
        png(folder / f"cell_{i:04d}_{'x' * 60}.png", i % 7)
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    args = ["classify", folder, "--model", tiny_model, "--data-dir", data]
    tmpfs = shutil.which("unshare") and subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount -t tmpfs -o size=160k tmpfs '{data}'"], capture_output=True).returncode == 0
    if tmpfs:
        cli(*args, wrap=["unshare", "--mount", "sh", "-c", DISK_FULL, "sh"], env={**os.environ, "DATA": str(data),
                                                                                    "OUT": str(out)})
        runs = [((out / f"{n}.rc").read_text().strip(), (out / f"{n}.out").read_text(errors="replace"),
                 (out / f"{n}.err").read_text(errors="replace")) for n in (1, 2)]
    else:
        import resource

        def small_files():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (160_000, 160_000))

        runs = [(str(r.returncode), r.stdout, r.stderr) for r in (cli(*args, preexec=small_files), cli(*args))]
    (rc, _, err), (rc2, out2, err2) = runs
    lines = err.strip().splitlines()
    assert rc == "3" and len(lines) == 1 and lines[0].startswith("error:"), err[-2000:]
    assert "full" in lines[0] or "could not be saved" in lines[0]
    assert rc2 == "0" and "1500 images" in out2, err2[-2000:]
    classified_again = int(out2.split(" classified now")[0].rsplit(" ", 1)[-1])
    assert 0 < classified_again < 1500  # the first run's saved part was kept, not redone


def test_concurrent_starts_on_one_folder_are_safe(tmp_path, tiny_model):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(40):
        png(folder / f"cell_{i:02d}.png", i)
    # Each process loads everything, then all of them open the session at the same instant.
    code = ("import sys, time\nimport desktop.cli as c\nimport onnxruntime\n"
            "go = float(sys.argv[1])\ntime.sleep(max(0.0, go - time.time() - 0.02))\n"
            "while time.time() < go: pass\nsys.exit(c.main(sys.argv[2:]))\n")
    for round_ in range(3):
        data = tmp_path / f"data{round_}"
        go = time.time() + 3
        procs = [subprocess.Popen([sys.executable, "-c", code, str(go), "classify", str(folder), "--model", str(tiny_model),
                                   "--data-dir", str(data)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, preexec_fn=capped) for _ in range(4)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        for code_, out, err in results:
            assert code_ == 0 and "Traceback" not in err, err[-2000:]
            assert "40 images" in out
        assert len(list((data / "sessions").glob("*.sqlite"))) == 1, "a racing start archived the session"


def test_closed_output_pipe_is_quiet_and_keeps_the_results(tmp_path, tiny_model, good_folder):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) has gone
    out = cli("classify", good_folder, "--model", tiny_model, "--data-dir", tmp_path / "data", stdout=write_end)
    os.close(write_end)
    assert out.returncode == 141, out.stderr
    assert out.stderr.strip() == ""
    again = cli("classify", good_folder, "--model", tiny_model, "--data-dir", tmp_path / "data")
    assert "0 classified now" in again.stdout and "12 images" in again.stdout


@pytest.fixture(scope="module")
def many_cells(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    folder = root / "f"
    folder.mkdir()
    for i in range(3000):
        png(folder / f"c{i:04d}.png", i % 5)
    return folder, make_tiny_model(root / "tiny.onnx")


def _interruptible():
    capped()
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell may start tests with Ctrl+C ignored


def _wait_until_our_code_runs(pid: int) -> None:
    """Until the CLI loads numpy: the interpreter's own start-up (where no program can catch a
    Ctrl+C) is over, and SlideTally's code is loading its libraries."""
    maps, end = Path(f"/proc/{pid}/maps"), time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if "numpy" in maps.read_text():
                return
        except OSError:
            return
        time.sleep(0.002)


CTRL_C_DELAYS = (0.0, 0.15, 0.3, 0.5)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when the CLI's own code runs")
@pytest.mark.parametrize("delay", CTRL_C_DELAYS)
def test_ctrl_c_in_any_phase_ends_with_one_line(tmp_path, many_cells, delay):
    """Loading, scanning, classifying, exporting: the run takes about half a second after its
    libraries start loading, so these delays land in each phase."""
    folder, model = many_cells
    cmd = [sys.executable, "-m", "desktop.cli", "classify", str(folder), "--model", str(model), "--data-dir",
           str(tmp_path / "data"), "--csv", str(tmp_path / "c.csv")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)
    _wait_until_our_code_runs(proc.pid)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    if proc.returncode == 0:  # only the last delay may land after the run: then it finished and said so
        assert delay == max(CTRL_C_DELAYS) and "images" in out and (tmp_path / "c.csv").exists(), (out, err)
    else:
        assert proc.returncode == 130, (proc.returncode, err)
        assert err.strip().splitlines()[-1].startswith("cancelled")
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    again = cli("classify", folder, "--model", model, "--data-dir", tmp_path / "data")
    assert again.returncode == 0 and "3000 images" in again.stdout, again.stderr[-2000:]


# Native code that calls back into Python while it loads (pydantic-core building the FHIR models did, in CI) only
# prints what such a callback raises: a Ctrl+C raised there is lost, and a traceback is printed. This emulates it.
SWALLOWING_IMPORT = """
import os, signal, sys

class SwallowingCallback:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10000):  # Python's handler for the signal runs here, inside the callback
            pass

class Finder:
    def find_spec(self, name, path=None, target=None):
        if name == "desktop.outlets.text":  # imported while the CLI loads
            SwallowingCallback()  # made and collected at once
        return None

sys.meta_path.insert(0, Finder())
from desktop.cli import main
raise SystemExit(main())
"""


def test_ctrl_c_inside_a_library_callback_at_load_still_cancels_in_one_line(tmp_path, many_cells):
    folder, model = many_cells
    proc = subprocess.run([sys.executable, "-c", SWALLOWING_IMPORT, "classify", str(folder), "--model", str(model),
                           "--data-dir", str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          preexec_fn=_interruptible)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1] == "cancelled"
    assert not (tmp_path / "data").exists()  # cancelled before anything was stored


def test_bomb_folder_is_refused_and_stays_under_1_gb(tmp_path):
    folder, refused, allowed = make_bomb_folder(tmp_path)
    model = make_tiny_model(tmp_path / "linear.onnx", metadata_overrides={"resize": "linear"})  # full decodes
    out, peak_mb = run_measured(["classify", folder, "--model", model, "--data-dir", tmp_path / "data", "--csv",
                                 tmp_path / "c.csv"], tmp_path)
    print(f"peak RSS of the bomb folder: {peak_mb:.0f} MB")
    assert out.returncode == 0, out.stderr[-2000:]
    cells = body(read_csv(tmp_path / "c.csv"), "file")
    for name in refused:
        assert cells[name]["unreadable"].startswith("image too large"), (name, cells[name]["unreadable"])
    for name in allowed:
        assert cells[name]["ai_class"], (name, cells[name]["unreadable"])
    assert peak_mb < 1024


def test_opencv_checks_the_same_pixel_limit_before_it_allocates():
    from desktop.core.inference.imaging import MAX_PIXELS

    code = "import desktop, cv2, os; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": str(2**40)}, check=True)
    assert int(out.stdout) == MAX_PIXELS


PROBE = """
import runpy, sys, time
sys.path.insert(0, {root!r})
sys.argv = ["slidetally-cli", *sys.argv[2:]]
try:
    runpy.run_path({launcher!r}, run_name="__main__")
except SystemExit as exc:
    print("exit", exc.code)
time.sleep(float({linger!r}))
"""


def test_no_telemetry_store_and_no_inet_socket(tmp_path, tiny_model, good_folder):
    """ONNX Runtime's telemetry writes a device id under ~/.cache and, after ~10 s, looks up its
    server. The launcher and the CLI must do neither, whatever the environment says."""
    home = tmp_path / "home"
    home.mkdir()
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE.format(root=str(ROOT), launcher=str(ROOT / "installer" / "launch_cli.py"), linger=12))
    cmd = [sys.executable, str(probe), "x", "classify", str(good_folder), "--model", str(tiny_model), "--data-dir",
           str(tmp_path / "data")]
    trace = tmp_path / "strace.txt"
    if shutil.which("strace"):
        cmd = ["strace", "-f", "-qq", "-e", "trace=socket", "-o", str(trace), *cmd]
    if os.geteuid() == 0 and shutil.which("unshare"):
        cmd = ["unshare", "--net", *cmd]  # a network of its own: even a regression sends nothing out
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=home_env(home, ORT_DISABLE_TELEMETRY="0"))
    assert "exit 0" in out.stdout, out.stderr[-2000:]
    assert not (home / ".cache" / "Microsoft").exists(), "ONNX Runtime created its telemetry store"
    if trace.exists():
        inet = [line for line in trace.read_text().splitlines() if "AF_INET" in line]
        assert inet == [], f"the app opened internet sockets: {inet[:3]}"


@pytest.mark.parametrize("entry", ["desktop.ui.app", "trainer", "desktop.core.inference.model"])
def test_every_entry_point_disables_telemetry_before_onnxruntime_loads(tmp_path, tiny_model, entry):
    code = (f"import {entry}\nimport numpy as np, onnxruntime as ort\n"
            f"s = ort.InferenceSession({str(tiny_model)!r}, providers=['CPUExecutionProvider'])\n"
            "s.run(None, {'image': np.zeros((1, 16, 16, 3), np.uint8)})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=home_env(tmp_path, ORT_DISABLE_TELEMETRY="0", QT_QPA_PLATFORM="offscreen"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert not (tmp_path / ".cache" / "Microsoft").exists()


def test_bad_models_are_refused_in_one_line_and_never_hide_the_good_one(tmp_path, good_folder):
    from desktop.core.errors import ModelError
    from desktop.core.inference.model import Model, discover_models

    models = tmp_path / "models"
    models.mkdir()
    make_tiny_model(models / "good.onnx")
    for kind in ("nan", "rank0", "logits"):
        bad = make_bad_model(models / f"{kind}.onnx", kind)
        with pytest.raises(ModelError, match=f"{kind}.onnx"):
            Model(bad)
    infos, problems = discover_models(models)
    assert [i.key for i in infos] == ["good"]
    assert sorted(p.split()[0].rstrip(":") for p in problems) == ["logits.onnx", "nan.onnx", "rank0.onnx"]
    out = cli("classify", good_folder, "--model", models / "nan.onnx", "--data-dir", tmp_path / "data")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "NaN" in out.stderr, out.stderr


def test_a_model_answer_that_is_not_a_number_is_left_out_not_counted(tiny_model):
    from desktop.core.inference.decision import make_calls
    from desktop.core.inference.model import Model
    from desktop.core.inference.scan import SourceFile

    info = Model(tiny_model).info
    sources = [SourceFile(Path(f"{i}.png"), f"{i}.png", 1, 0.0) for i in range(2)]
    calls = make_calls(info, sources, np.array([[np.nan, 0.5, 0.5], [0.2, 0.7, 0.1]], np.float32),
                       np.array([1.0, 1.0], np.float32))
    assert calls[0].ai_class is None and "not a number" in calls[0].unreadable
    assert calls[1].ai_class == "b" and not calls[1].unreadable


def test_interrupted_and_killed_exports_leave_no_temp_file(tmp_path, tiny_model, good_folder, monkeypatch):
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    from desktop.outlets.csv import export_csv

    session = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    session.classify()
    out = tmp_path / "out"
    out.mkdir()
    # an export killed (kill -9) long ago, by a process that no longer runs
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".cells.csv.{int(dead.stdout)}.0123abcd.tmp"
    stale.write_text("half an export")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    def interrupted(_fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_csv(session_report(session), session.cells(), out / "cells.csv", None)
    monkeypatch.undo()
    session.close()
    assert sorted(p.name for p in out.iterdir()) == []


def test_one_path_for_both_csvs_is_refused(tmp_path, tiny_model, good_folder):
    out = cli("classify", good_folder, "--model", tiny_model, "--data-dir", tmp_path / "data", "--csv",
              tmp_path / "x.csv", "--summary", tmp_path / "x.csv")
    assert out.returncode == 2 and "same file" in out.stderr and not (tmp_path / "x.csv").exists()


def test_empty_folder_exits_1(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    out = cli("classify", tmp_path / "empty", "--model", tiny_model, "--data-dir", tmp_path / "data")
    assert out.returncode == 1 and "nothing to classify" in out.stderr and "Traceback" not in out.stderr


def test_bench_starts_when_the_first_file_is_unreadable(tmp_path, tiny_model, good_folder):
    (good_folder / "aaa_first.jpg").write_bytes(b"")
    out = cli("bench", good_folder, "--model", tiny_model, "--images", "24", "--batch", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "end-to-end" in out.stdout


def test_a_patch_name_claiming_a_huge_offset_does_not_blow_up_the_heat_map(tmp_path):
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    from desktop.core.report.summary import idc_summary

    folder = tmp_path / "slide"
    folder.mkdir()
    png(folder / "p_idx5_x0_y0_class0.png")
    png(folder / "p_idx5_x99999999_y99999999_class0.png", 1)
    model = Model(make_tiny_model(tmp_path / "idc.onnx", classes=("no", "idc"), size=(50, 50), task="idc-patch"))
    session = Session.open(folder, model, tmp_path / "data")
    session.classify()
    slide = idc_summary(session.cells(), session.info)
    session.close()
    assert slide.patches == 2 and slide.heat.shape == (1, 1)


def test_the_window_shows_a_hostile_folder_without_hanging(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMessageBox

    from desktop.core.inference.scan import scan_folder

    folder, _ = make_hostile_folder(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    make_tiny_model(models / "tiny.onnx")
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: None)
    window = open_window(qtbot, tmp_path, models)
    n = len(scan_folder(folder))
    window.sessions.open_folder(folder, guess=False)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == n, timeout=30_000)
    gallery = window.gallery_model
    tips = [gallery.data(gallery.index(i), Qt.ItemDataRole.ToolTipRole) for i in range(n)]
    for i in range(n):
        gallery.data(gallery.index(i), Qt.ItemDataRole.DecorationRole)  # a thumbnail of every item, pipes included
    assert gallery.thumbnails.wait(20_000), "a thumbnail is stuck on a file that is not a regular file"
    assert any(tip.startswith("caf\\xe9.png") for tip in tips)
    assert any("not a regular file" in tip for tip in tips)
