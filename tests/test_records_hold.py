"""Records that hold: a hand-edited database, a session that cannot be read and archives made in
one second never cost or forge a signed result (issue 27)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, make_tiny_model

from desktop.core.errors import SignOffRefused, StoreError
from desktop.core.records.integrity import RecordAltered
from desktop.core.records.session import Session
from desktop.core.records.store import ARCHIVED, session_files
from desktop.core.report.session_report import session_report


@pytest.fixture
def signed(tmp_path, good_folder):
    """A classified, reclassified, signed-off and verified session; returns (model path, data dir, session file)."""
    model = make_tiny_model(tmp_path / "tiny.onnx")
    data = tmp_path / "data"
    s = Session.open(good_folder, model, data)
    s.classify()
    first = s.cells()[0]
    s.reclassify([first.file], "b" if first.ai_class != "b" else "c", "Ana")
    s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
    s.sign_off("Ana", "B-2026-0412")
    s.os_user = "ben"  # the second person logs in as themself
    s.verify("Ben")
    path = s.store.path
    assert not s.altered and not s.store.integrity_problems()
    s.close()
    return model, data, path


def _cli(*args, data):
    return subprocess.run([sys.executable, "-m", "desktop.cli", *args, "--data-dir", str(data)], capture_output=True,
                          text=True, cwd=ROOT, timeout=180)


def _edit(path, sql: str, *params) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


def test_audit_rows_cannot_be_changed_or_deleted(signed):
    _, _, path = signed
    for sql in ("UPDATE audit SET who='Mallory'", "DELETE FROM audit WHERE action='reclassify'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            _edit(path, sql)


@pytest.mark.parametrize("forgery", [
    "UPDATE images SET final_class='a' WHERE final_class IS NOT NULL",  # a corrected call changed
    "UPDATE meta SET value='Mallory' WHERE key='signed_by'",  # the signature rewritten
    "UPDATE meta SET value='Eve' WHERE key='verified_by'",
    "DROP TRIGGER audit_append_only_delete; DELETE FROM audit WHERE action='reclassify'",  # the correction erased
    "DROP TRIGGER audit_append_only_delete; DELETE FROM audit WHERE id=(SELECT MAX(id) FROM audit)",  # the tail cut
    "UPDATE meta SET value='open' WHERE key='state'",
])
def test_a_record_edited_outside_slidetally_is_shown_altered_and_never_exported(signed, good_folder, tmp_path, forgery):
    model, data, path = signed
    db = sqlite3.connect(path)
    db.executescript(forgery)
    db.commit()
    db.close()
    s = Session.open(good_folder, model, data)
    assert s.altered
    with pytest.raises(RecordAltered, match="altered outside SlideTally"):
        session_report(s)
    with pytest.raises(RecordAltered):
        s.reclassify([s.cells()[0].file], "a", "Ana")
    s.close()
    hl7 = tmp_path / "out.hl7"
    out = _cli("report", str(good_folder), "--model", str(model), "--hl7", str(hl7), data=data)
    assert out.returncode == 2 and "altered outside SlideTally" in out.stderr
    assert not hl7.exists()
    check = _cli("audit-check", data=data)
    assert check.returncode == 2 and "ALTERED" in check.stdout


def test_audit_check_passes_untouched_records_and_names_the_folder_checked(signed, good_folder):
    _, data, path = signed
    out = _cli("audit-check", str(good_folder), data=data)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok       {path.name}" in out.stdout and "1 session(s) checked, 0 altered" in out.stdout


def test_ai_calls_are_audited_once_per_run_with_the_model(tmp_path, good_folder):
    model = make_tiny_model(tmp_path / "tiny.onnx")
    s = Session.open(good_folder, model, tmp_path / "data")
    s.classify()
    rows = [e for e in s.audit() if e.action == "classify"]
    assert len(rows) == 1 and "12 image(s)" in rows[0].new and s.info.sha256 in rows[0].reason
    s.close()


def test_a_session_that_cannot_be_read_is_an_error_and_is_never_moved(signed, good_folder):
    model, data, path = signed
    original = path.read_bytes()
    path.write_bytes(b"not a database, as a full disk or a bad sector can leave it" * 100)
    damaged = path.read_bytes()
    with pytest.raises(StoreError, match="nothing was moved"):
        Session.open(good_folder, model, data)
    assert path.read_bytes() == damaged
    assert not [p for p in path.parent.iterdir() if ARCHIVED.search(p.name)]
    path.write_bytes(original)  # space is back: the signed session is there as it was
    s = Session.open(good_folder, model, data)
    assert s.signed and not s.altered
    s.close()


def test_archives_made_in_one_second_never_overwrite_each_other(tmp_path, good_folder):
    a = make_tiny_model(tmp_path / "m.onnx")
    data = tmp_path / "data"
    for n in range(3):  # the same key, another file each time: the previous session is archived
        make_tiny_model(a, metadata_overrides={"version": f"0.0.{n}"})
        s = Session.open(good_folder, a, data)
        s.classify()
        s.close()
    archives = [p for p in (data / "sessions").iterdir() if ARCHIVED.search(p.name)]
    assert len(archives) == 2 and all(p.stat().st_size > 0 for p in archives)
    assert len(session_files(data)) == 1


def test_a_byte_change_that_keeps_size_and_time_is_seen(tmp_path):
    """`cp -p` of a same-size BMP over another, then `touch -r`: the cell must be classified again."""
    import os

    from conftest import random_rgb, write_image

    folder = tmp_path / "bmp"
    folder.mkdir()
    for i in range(4):
        write_image(folder / f"cell_{i}.bmp", random_rgb(i))
    model = make_tiny_model(tmp_path / "tiny.onnx", metadata_overrides={"review_threshold": "0"})
    s = Session.open(folder, model, tmp_path / "data")
    s.classify()
    victim, donor = folder / "cell_0.bmp", folder / "cell_1.bmp"
    stat = victim.stat()
    victim.write_bytes(donor.read_bytes())  # uncompressed: the same size
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert s.changes().changed == ("cell_0.bmp",)
    with pytest.raises(SignOffRefused, match="folder has changed"):
        s.sign_off("Ana", "B-1")
    s.close()


def test_outputs_never_overwrite_the_record_a_source_image_or_a_sidecar(signed, good_folder, tmp_path):
    model, data, session_file = signed
    record, image = session_file.read_bytes(), (good_folder / "cell_00.png").read_bytes()
    cases = [("report", str(good_folder), "--hl7", str(session_file)),
             ("report", str(good_folder), "--pdf", str(good_folder / "cell_00.png")),
             ("report", str(good_folder), "--csv", str(tmp_path / "r.csv"), "--fhir", str(tmp_path / "r.json")),
             ("report", str(good_folder), "--csv", str(tmp_path / "m.csv"), "--pdf", str(model))]
    for args in cases:
        out = _cli(*args, "--model", str(model), data=data)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)
    assert session_file.read_bytes() == record and (good_folder / "cell_00.png").read_bytes() == image
    assert not list(tmp_path.glob("r.*")) and not (tmp_path / "m.csv").exists()


def test_one_command_writes_all_of_its_outputs_or_none(signed, good_folder, tmp_path):
    import argparse

    from desktop.cli.app import write_outputs
    from desktop.core.errors import ExportError

    model, data, _ = signed
    s = Session.open(good_folder, model, data)
    report, cells = session_report(s), s.cells()
    old = tmp_path / "r.csv"
    old.write_text("the report exported yesterday")
    args = argparse.Namespace(csv=str(old), summary=None, hl7=str(tmp_path / "r.hl7"), csv_locale="comma", pdf=None,
                              fhir=str(tmp_path / "no such folder" / "r.json"))
    with pytest.raises(ExportError):
        write_outputs(report, cells, s.folder, args)  # the FHIR file cannot be written: nothing is
    s.close()
    assert old.read_text() == "the report exported yesterday" and not (tmp_path / "r.hl7").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize("specimen", ["B" * 100_000, "B-12\u202e34", "B-1\x00"])
def test_identifiers_are_checked_at_entry_before_any_output(tmp_path, good_folder, specimen):
    from desktop.core.errors import ActionRefused

    model = make_tiny_model(tmp_path / "tiny.onnx")
    s = Session.open(good_folder, model, tmp_path / "data")
    with pytest.raises(ActionRefused):
        s.set_identity(specimen, "", "Ana")
    assert s.record().specimen_id == ""
    s.close()


def test_the_window_shows_an_altered_record_read_only_with_a_red_banner(qtbot, signed, good_folder, tmp_path):
    from conftest import open_window

    model, data, path = signed
    _edit(path, "UPDATE meta SET value='Mallory' WHERE key='signed_by'")
    window = open_window(qtbot, tmp_path, model.parent, data_root=data)
    window.sessions.open_folder(good_folder)
    assert window.banner.isVisible() and "altered outside SlideTally" in window.banner.text()
    assert "#dc2626" in window.banner.styleSheet()
    assert not window.menu.signoff.isEnabled() and not window.menu.reopen.isEnabled()
    assert not window.sessions.is_classifying()
    window.sessions.close_session()


@pytest.mark.parametrize("bad", [
    {"metrics": "[1,2,3]"}, {"review_threshold": "nan"}, {"temperature": "0"}, {"ood_threshold": "inf"},
    {"classes": '[{"key": "a"}, {"key": "a"}, {"key": "c"}]'}, {"provenance": "x" * 2_000_000},
])
def test_a_model_with_bad_metadata_is_refused_and_never_hides_the_others(tmp_path, bad):
    from desktop.core.inference.model import discover_models

    folder = tmp_path / "models"
    folder.mkdir()
    make_tiny_model(folder / "good.onnx")
    make_tiny_model(folder / "bad.onnx", metadata_overrides=bad)
    infos, problems = discover_models(folder)
    assert [i.key for i in infos] == ["good"] and len(problems) == 1 and problems[0].startswith("bad.onnx")
    out = subprocess.run([sys.executable, "-m", "desktop.cli", "models", "--folder", str(folder)], capture_output=True,
                         text=True, cwd=ROOT, timeout=180)
    assert out.returncode == 0 and "skipped: bad.onnx" in out.stdout and "Traceback" not in out.stderr


def test_a_huge_model_file_is_refused_before_it_is_read(tmp_path):
    import resource as rlimit

    from desktop.core.errors import ModelError
    from desktop.core.inference.model import MAX_MODEL_BYTES, Model

    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_MODEL_BYTES + 1)
    before = rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelError, match="at most"):
        Model(huge)
    assert rlimit.getrusage(rlimit.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: it was not read


def test_report_rescans_read_only_and_names_post_sign_off_changes_to_the_lis(signed, good_folder, tmp_path):
    import json as jsonlib
    import shutil

    import hl7

    model, data, session_file = signed
    record = session_file.read_bytes()
    shutil.copy(good_folder / "cell_00.png", good_folder / "late_arrival.png")
    out = _cli("report", str(good_folder), "--model", str(model), "--hl7", str(tmp_path / "r.hl7"),
               "--fhir", str(tmp_path / "r.json"), data=data)
    assert out.returncode == 0, out.stderr
    message = hl7.parse((tmp_path / "r.hl7").read_text().replace("\n", "\r"))
    notes = [str(seg[3]) for seg in message.segments("NTE")]
    assert any("Folder changed since sign-off" in n and "1 new" in n for n in notes), notes
    bundle = jsonlib.loads((tmp_path / "r.json").read_text())
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert "Folder changed since sign-off" in report["conclusion"]
    assert session_file.read_bytes() == record  # the rescan wrote nothing


def test_a_tiff_that_gives_its_size_twice_is_judged_by_the_larger(tmp_path):
    import struct

    from desktop.core.inference.imaging import MAX_PIXELS, image_header

    def entry(tag, value, kind=4):
        return struct.pack("<HHII", tag, kind, 1, value) if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0)

    entries = [entry(256, 30000), entry(257, 30000), entry(256, 16), entry(257, 16), entry(258, 8, 3),
               entry(259, 1, 3), entry(262, 1, 3), entry(273, 8 + 2 + 12 * 11 + 4), entry(277, 1, 3),
               entry(278, 16), entry(279, 256)]
    data = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + b"".join(entries) + b"\0" * 4 + b"\0" * 256
    header = image_header(data)
    assert (header.width, header.height) == (30000, 30000) and header.pixels > MAX_PIXELS


def test_the_window_shows_what_another_process_stored_when_it_comes_back(qtbot, tmp_path, good_folder):
    from conftest import open_window
    from PySide6.QtCore import QEvent

    (tmp_path / "models").mkdir()
    model = make_tiny_model(tmp_path / "models" / "tiny.onnx")
    window = open_window(qtbot, tmp_path, model.parent)
    window.sessions.open_folder(good_folder)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == 12,
                    timeout=30_000)
    other = Session.open(good_folder, model, tmp_path / "data")  # the CLI or a second window
    file = other.cells()[0].file
    other.reclassify([file], "c" if other.cells()[0].ai_class != "c" else "b", "Ben")
    wanted = other.cells([file])[0].final_class
    other.close()
    shown = lambda: next(c for c in window.gallery_model.cells if c.file == file).final_class
    assert shown() != wanted  # nothing polls behind the technician's back
    window.activateWindow()
    window.changeEvent(QEvent(QEvent.Type.ActivationChange))
    if not window.isActiveWindow():  # offscreen platforms may not activate: the same call the event makes
        window.sessions.catch_up()
    assert shown() == wanted
    window.sessions.close_session()


@pytest.mark.parametrize("delay", [0.3, 1.2, 2.0, 3.0])
def test_the_window_ends_cleanly_on_sigterm_at_any_moment_of_its_start(tmp_path, delay):
    """Logout or `kill` while the app starts (before the window, while models load, while it classifies):
    exit 0, no abort, no hang, no traceback."""
    import os
    import signal
    import time

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.Popen([sys.executable, "-m", "desktop.ui.app", str(ROOT / "resources" / "samples" / "blood")],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the app hung after SIGTERM")
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, err[-1500:])


def test_the_window_refuses_to_export_into_the_analysed_or_data_folder(qtbot, signed, good_folder, tmp_path):
    from conftest import open_window

    model, data, _ = signed
    window = open_window(qtbot, tmp_path, model.parent, data_root=data)
    window.sessions.open_folder(good_folder)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying(), timeout=30_000)
    refused = []
    window.feedback.error = lambda title, message: refused.append(message)
    assert window.exports.write_pdf(good_folder / "r.pdf") is False
    assert window.exports.write_csv(data / "r-cells.csv") is None
    assert len(refused) == 2 and "analysed folder" in refused[0] and "data folder" in refused[1]
    assert not (good_folder / "r.pdf").exists() and not list(data.glob("r-*"))
    assert window.exports.write_pdf(tmp_path / "r.pdf") is True and (tmp_path / "r.pdf").exists()  # elsewhere: written
    out = tmp_path / "out"
    out.mkdir()
    (out / "audit.json").hardlink_to(model)  # the audit trail's sidecar would land on the model file
    before = model.read_bytes()
    assert window.exports.write_audit_csv(out / "audit.csv") is False
    assert "model" in refused[-1] and not (out / "audit.csv").exists() and model.read_bytes() == before
    window.sessions.close_session()


@pytest.mark.parametrize("left", ["empty file", "tables only"])
def test_a_start_stopped_before_the_session_had_its_identity_opens_as_new(tmp_path, good_folder, left):
    """Ctrl-C between creating the database and writing its meta leaves a file that holds nothing
    (CI met it): the next start makes the session, as if the first had never run."""
    from desktop.core.records.store import SCHEMA, session_path
    model = make_tiny_model(tmp_path / "tiny.onnx")
    data = tmp_path / "data"
    path = session_path(data, good_folder, "tiny")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    if left == "tables only":
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        db.close()
    s = Session.open(good_folder, model, data)
    try:
        s.classify()
        assert s.cells() and not s.altered and not s.store.integrity_problems()
    finally:
        s.close()


def test_a_session_with_cells_but_no_identity_is_refused_and_kept(signed, good_folder):
    model, data, path = signed
    _edit(path, "DROP TABLE meta")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="nothing was moved"):
        Session.open(good_folder, model, data)
    assert path.read_bytes() == before
