"""Records no SQL tool can forge and no slip can sign (issue 38): each way an insider with the sqlite3
shell got a forged or wrong result to the LIS is reproduced here and must be refused; the seal travels
in every outlet and `audit-check --against` compares the LIS's copy with the record."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT, make_tiny_model

from desktop.core.errors import SignOffRefused
from desktop.core.records.integrity import RecordAltered, seal_line
from desktop.core.records.session import Session
from desktop.core.report.session_report import session_report
from desktop.outlets.fhir import fhir_json
from desktop.outlets.hl7 import hl7_message


def _cli(*args, data):
    return subprocess.run([sys.executable, "-m", "desktop.cli", *map(str, args), "--data-dir", str(data)],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)


def _sql(path, script: str) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(script)
        db.commit()
    finally:
        db.close()


@pytest.fixture
def model(tmp_path):
    return make_tiny_model(tmp_path / "tiny.onnx")


@pytest.fixture
def classified(tmp_path, good_folder, model):
    """A classified, open session with every Review cell confirmed (ready to sign); (session, data dir)."""
    data = tmp_path / "data"
    s = Session.open(good_folder, model, data)
    s.classify()
    s.set_identity("B-7", "", "Ana")
    s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
    yield s, data
    s.close()


def _reopen(good_folder, model, data) -> Session:
    return Session.open(good_folder, model, data)


# --- the seven forgeries --------------------------------------------------------------------------

def test_1_a_trigger_planted_in_an_open_session_never_fires_inside_a_sign_off(classified, good_folder, model):
    s, data = classified
    _sql(s.store.path, "CREATE TRIGGER rewrite AFTER UPDATE ON meta BEGIN UPDATE images SET final_class='a'; END;")
    with pytest.raises(RecordAltered, match="trigger 'rewrite'"):
        s.sign_off("Ana")
    assert not s.signed and all(c.final_class != "a" or c.ai_class == "a" for c in s.cells() if c.final_class)
    again = _reopen(good_folder, model, data)
    assert any("rewrite" in p for p in again.altered)
    again.close()


def test_2_an_open_session_flipped_to_signed_is_altered(classified, good_folder, model, tmp_path):
    s, data = classified
    s.close()
    _sql(s.store.path, "UPDATE meta SET value='signed' WHERE key='state';"
                       "INSERT OR REPLACE INTO meta VALUES ('signed_by', 'Dr. Lee');")
    again = _reopen(good_folder, model, data)
    assert again.altered
    with pytest.raises(RecordAltered):
        session_report(again)
    again.close()
    out = _cli("report", good_folder, "--model", model, "--hl7", tmp_path / "m.hl7", data=data)
    assert out.returncode == 2 and not (tmp_path / "m.hl7").exists()


def test_3_a_signed_session_cannot_be_downgraded_to_one_without_a_chain(classified, good_folder, model):
    s, data = classified
    s.sign_off("Ana")
    s.close()
    _sql(s.store.path, "DROP TRIGGER audit_append_only_update; UPDATE audit SET prev_hash=NULL, row_hash=NULL;"
                       "DELETE FROM meta WHERE key IN ('chain_head', 'signed_digest');")
    again = _reopen(good_folder, model, data)
    assert again.altered and any("guard" in p for p in again.altered)
    again.close()
    check = _cli("audit-check", data=data)
    assert check.returncode == 2 and "ALTERED" in check.stdout


@pytest.mark.parametrize("key, value", [("reopened_at", "2026-12-01T10:00:00+01:00"),
                                        ("slide_scale", "read at 0.25 µm/px (forged)"),
                                        ("signed_login", "someone-else")])
def test_4_every_meta_key_an_outlet_reads_is_sealed(classified, good_folder, model, key, value):
    s, data = classified
    s.sign_off("Ana")
    s.close()
    _sql(s.store.path, f"INSERT OR REPLACE INTO meta VALUES ('{key}', '{value}');")
    again = _reopen(good_folder, model, data)
    assert again.altered
    with pytest.raises(RecordAltered):
        session_report(again)
    again.close()


@pytest.mark.parametrize("edit", ["UPDATE images SET final_class='c', confirmed=1 WHERE id=(SELECT MIN(id) FROM images)",
                                  "UPDATE images SET review=1-review, confirmed=1 WHERE id=(SELECT MIN(id) FROM images)"])
def test_5_cells_edited_in_an_open_session_are_not_sealed_by_the_next_sign_off(classified, good_folder, model, edit):
    s, data = classified
    first = s.cells()[0]
    if "final_class" in edit and first.ai_class == "c":
        edit = edit.replace("'c'", "'b'")
    _sql(s.store.path, edit + ";")
    with pytest.raises(RecordAltered, match="not explained by the AI call and the audit trail"):
        s.sign_off("Ana")
    assert not s.signed


def test_6_verification_and_adaptation_leave_out_an_altered_session(classified, model):
    from desktop.core.inference.model import Model
    from desktop.core.lab.site_cells import signed_sessions

    s, data = classified
    s.sign_off("Ana")
    path = s.store.path
    s.close()
    info = Model(model).info
    assert len(signed_sessions(data, info)) == 1
    _sql(path, "DROP TRIGGER audit_append_only_update; UPDATE images SET final_class='a';")
    found = signed_sessions(data, info)
    assert list(found) == [] and found.altered == [path.name] and "altered" in found.altered_note()
    out = _cli("verify", "--model", model, data=data)
    assert out.returncode != 0 and "altered outside SlideTally" in out.stderr


def test_7_a_re_hashed_forgery_is_caught_by_the_message_the_lis_holds(classified, good_folder, model, tmp_path):
    """The insider's script: change a call, then re-seal with the app's own functions. The record is
    self-consistent again; the HL7 message delivered at sign-off is not."""
    from desktop.core.records.integrity import record_digest, sealed_keys
    from desktop.core.records.rows import SEALED_COLUMNS, meta_of, py_values

    s, data = classified
    s.sign_off("Ana")
    sent = tmp_path / "sent.hl7"
    sent.write_text(hl7_message(session_report(s)), encoding="utf-8")
    path = s.store.path
    s.close()
    assert _cli("audit-check", good_folder, "--against", sent, data=data).returncode == 0

    db = sqlite3.connect(path)
    db.execute("UPDATE images SET ai_class='a', final_class='a' WHERE id=(SELECT MIN(id) FROM images)")
    meta = meta_of(db)
    cells = [py_values(r) for r in db.execute(f"SELECT {SEALED_COLUMNS} FROM images")]
    digest = record_digest(meta, cells, sealed_keys(meta, "sign-off"))
    db.execute("UPDATE meta SET value=? WHERE key='signed_digest'", (digest,))
    db.execute("DROP TRIGGER audit_append_only_update")
    db.execute("UPDATE audit SET new=? WHERE action='sign-off'", (digest,))
    from desktop.core.records.integrity import GENESIS, audit_row_hash
    previous = GENESIS
    for row in db.execute("SELECT id, at, who, os_user, action, file, old, new, reason FROM audit ORDER BY id").fetchall():
        own = audit_row_hash(previous, list(row[1:]))
        db.execute("UPDATE audit SET prev_hash=?, row_hash=? WHERE id=?", (previous, own, row[0]))
        previous = own
    db.execute("UPDATE meta SET value=? WHERE key='chain_head'", (previous,))
    db.execute("CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit "
               "BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END")
    db.commit()
    db.close()
    assert _cli("audit-check", good_folder, data=data).returncode == 0  # self-consistent: alone, not caught
    out = _cli("audit-check", good_folder, "--against", sent, data=data)
    assert out.returncode == 2 and "does not match" in out.stdout


# --- the anchor in every outlet ---------------------------------------------------------------------

def test_the_seal_travels_in_every_outlet(classified, tmp_path):
    from desktop.outlets.csv import COMMA, sidecar
    from desktop.outlets.pdf import report_document

    s, data = classified
    assert not session_report(s).record.seal  # nothing sealed before sign-off
    s.sign_off("Ana")
    report = session_report(s)
    seal = report.record.seal
    assert len(seal) == 64 and seal == s.store.seal_now()
    assert seal_line(seal) in hl7_message(report)
    bundle = json.loads(fhir_json(report))
    identifiers = bundle["entry"][0]["resource"]["identifier"]
    assert {"system": "urn:slidetally:seal", "value": seal} in identifiers
    assert seal_line(seal) in report_document(report, s.folder).html
    assert sidecar(report, COMMA, s.cells())["seal"] == seal
    (tmp_path / "b.json").write_text(fhir_json(report), encoding="utf-8")
    assert _cli("audit-check", s.store.path, "--against", tmp_path / "b.json", data=data).returncode == 0


# --- outputs, slips and read errors -----------------------------------------------------------------

def test_a_report_never_overwrites_a_session_file_wherever_it_lies(classified, tmp_path, good_folder, model):
    s, data = classified
    s.sign_off("Ana")
    path = s.store.path
    s.close()
    before = path.read_bytes()
    copy = tmp_path / "elsewhere.sqlite"
    copy.write_bytes(before)
    for target in (path, copy):
        out = _cli("report", path, "--csv", target, data=data)
        assert out.returncode == 2 and ("what this command reads" in out.stderr or "SQLite" in out.stderr)
    assert path.read_bytes() == before and copy.read_bytes() == before


@pytest.mark.parametrize("content", ["empty", "not images"])
def test_nothing_to_sign_cannot_be_signed(tmp_path, model, content):
    folder = tmp_path / "f"
    folder.mkdir()
    if content == "not images":
        (folder / "notes.txt").write_text("hello", encoding="utf-8")
        (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    s = Session.open(folder, model, tmp_path / "data")
    try:
        s.classify()
        s.set_identity("B-9", "", "Ana")
        assert "nothing to sign off" in s.sign_off_blockers()
        with pytest.raises(SignOffRefused, match="nothing to sign off"):
            s.sign_off("Ana")
        assert not s.signed
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_record_that_cannot_be_read_is_not_called_altered(classified, good_folder):
    s, data = classified
    s.close()
    s.store.path.chmod(0)
    try:
        out = _cli("audit-check", good_folder, data=data)
    finally:
        s.store.path.chmod(0o600)
    assert out.returncode == 3 and "cannot be read" in out.stdout and "ALTERED" not in out.stdout


def test_a_read_error_exits_3_not_2(classified, good_folder, monkeypatch, capsys):
    """The same rule where the file mode cannot stop the reader: a read that raises an OS error."""
    import argparse

    from desktop.cli import records

    s, data = classified
    s.close()

    def unreadable(path):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(records, "check_session_file", unreadable)
    code = records.cmd_audit_check(argparse.Namespace(target=str(good_folder), data_dir=str(data), against=None))
    out = capsys.readouterr().out
    assert code == 3 and "cannot be read" in out and "ALTERED" not in out


# --- who is working ---------------------------------------------------------------------------------

def test_the_operator_is_shown_and_a_verifier_never_becomes_the_operator(qtbot, tmp_path, good_folder, model,
                                                                          monkeypatch):
    import getpass

    from conftest import open_window
    from PySide6.QtWidgets import QInputDialog

    data = tmp_path / "data"
    s = Session.open(good_folder, model, data)
    s.classify()
    s.set_identity("B-10", "", "Ana")
    s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
    s.os_user = "ana-login"
    s.sign_off("Ana")
    s.close()
    window = open_window(qtbot, tmp_path, model.parent, data_root=data)
    assert "Working: not named yet" in window.operator_label.text()
    names = iter(["Ana", "Ben Ode", "Cleo"])
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (next(names), True))
    assert window.records.operator() == "Ana"
    assert window.operator_label.text() == f"Working: Ana (login {getpass.getuser()})"
    window.sessions.open_folder(good_folder)
    qtbot.waitUntil(lambda: window.sessions.session is not None and window.sessions.session.signed)
    window.records.verify()  # "Ben Ode", for this act alone
    qtbot.waitUntil(lambda: window.sessions.session.record().verified_by == "Ben Ode")
    assert window.records.operator() == "Ana" and "Ana" in window.operator_label.text()
    window.who.change()  # the one explicit way: "Cleo"
    assert window.records.operator() == "Cleo" and "Working: Cleo" in window.operator_label.text()
    window.sessions.close_session()


# --- the user models folder holds only what SlideTally installed ---------------------------------------

@pytest.fixture
def user_models(tmp_path, monkeypatch):
    from desktop.core.resources import user_models_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    folder = user_models_dir()
    folder.mkdir(parents=True)
    return folder


def test_the_user_folder_loads_only_models_slidetally_installed(user_models):
    import hashlib

    from desktop.core.inference.model import discover_models
    from desktop.core.inference.registry import register

    path = make_tiny_model(user_models / "stray.onnx")
    infos, problems = discover_models()
    assert "stray" not in {i.key for i in infos} and any("did not install it" in p for p in problems)
    register(path, hashlib.sha256(path.read_bytes()).hexdigest(), "stray", "Dr. Lee", "2026-12-06T09:00:00+01:00")
    assert "stray" in {i.key for i in discover_models()[0]}
    make_tiny_model(path, classes=("a", "b", "x"))  # the same name, other bytes
    infos, problems = discover_models()
    assert "stray" not in {i.key for i in infos} and any("bytes changed" in p for p in problems)


def test_no_model_passes_for_a_shipped_one(user_models):
    import hashlib

    from conftest import shipped

    from desktop.core.inference.model import discover_models
    from desktop.core.inference.registry import register

    shipped("blood-pbc8.onnx")
    impostor = make_tiny_model(user_models / "blood-pbc8.onnx")
    register(impostor, hashlib.sha256(impostor.read_bytes()).hexdigest(), "blood-pbc8", "x", "2026-12-06")
    infos, problems = discover_models()
    assert [i.path.parent.name for i in infos if i.key == "blood-pbc8"] == ["models"]
    assert [i for i in infos if i.key == "blood-pbc8"][0].path != impostor
    assert any("takes the key of the shipped model blood-pbc8" in p for p in problems)


def test_a_report_never_archives_a_session(classified, good_folder, tmp_path):
    s, data = classified
    s.sign_off("Ana")
    path = s.store.path
    s.close()
    (tmp_path / "other").mkdir()
    other = make_tiny_model(tmp_path / "other" / "tiny.onnx", classes=("a", "b", "z"))  # the same key, other bytes
    out = _cli("report", good_folder, "--model", other, data=data)
    assert out.returncode == 2 and "another model file" in out.stderr
    assert path.exists() and sorted(p.name for p in path.parent.glob("*.sqlite")) == [path.name]
