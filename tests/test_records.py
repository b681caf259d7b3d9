"""The records room on its own: the store (the only SQL), its session files, and the events."""

from __future__ import annotations

import shutil

import pytest
from conftest import make_tiny_model

from desktop.core.errors import SessionLocked
from desktop.core.events import Event
from desktop.core.lab.site_cells import signed_sessions
from desktop.core.records.domain import Actor, SessionState
from desktop.core.records.session import Session
from desktop.core.records.store import SessionStore, session_files, session_path


def _signed_session(tmp_path, good_folder, model_name: str):
    model = make_tiny_model(tmp_path / model_name, metadata_overrides={"review_threshold": "0"})
    session = Session.open(good_folder, model, tmp_path / "data")
    session.classify()
    session.sign_off("Ana Ruiz", "B-1")
    return session


def test_a_session_of_a_model_with_dots_in_its_key_is_found_for_verification_and_adaptation(tmp_path, good_folder):
    session = _signed_session(tmp_path, good_folder, "north.v2.onnx")
    info = session.info
    session.close()
    assert info.key == "north.v2"
    files = session_files(tmp_path / "data")
    assert session_path(tmp_path / "data", good_folder, "north.v2") in files
    assert [s.meta["specimen_id"] for s in signed_sessions(tmp_path / "data", info)] == ["B-1"]


def test_archived_sessions_are_left_out_of_the_current_ones(tmp_path, good_folder):
    session = _signed_session(tmp_path, good_folder, "north.v2.onnx")
    session.close()
    current = session_files(tmp_path / "data")
    archived = current[0].with_name(current[0].stem + ".20261125-103000.sqlite")
    shutil.copy(current[0], archived)
    assert session_files(tmp_path / "data") == current


def test_the_store_refuses_changes_to_a_signed_session_and_keeps_what_was_there(tmp_path, good_folder):
    session = _signed_session(tmp_path, good_folder, "tiny.onnx")
    store, before = session.store, session.cells()
    with pytest.raises(SessionLocked), store.write(Actor("Ana Ruiz", "ana")) as w:
        w.set_final(before[0].file, "b", True)
    assert session.cells() == before and store.meta("state") == SessionState.SIGNED
    session.close()


def test_a_store_made_by_another_model_file_is_kept_aside_not_overwritten(tmp_path, good_folder):
    path = tmp_path / "s.sqlite"
    SessionStore(path, good_folder, "m", "sha-one").close()
    again = SessionStore(path, good_folder, "m", "sha-two")
    try:
        assert again.meta("model_sha256") == "sha-two"
        assert [p.name for p in tmp_path.glob("s.*.sqlite")], "the first model's session was kept beside it"
    finally:
        again.close()


def test_events_call_back_in_order_and_disconnect():
    event, seen = Event("cells"), []
    first = event.connect(lambda x: seen.append(("first", x)))
    event.connect(lambda x: seen.append(("second", x)))
    event.emit(1)
    event.disconnect(first)
    event.emit(2)
    event.disconnect()
    event.emit(3)
    assert seen == [("first", 1), ("second", 1), ("second", 2)]


def test_the_core_logs_what_it_did_to_the_apps_log(tmp_path, good_folder, monkeypatch):
    import logging

    from desktop.core import logs

    monkeypatch.setattr(logs, "user_data_dir", lambda: tmp_path)
    root = logging.getLogger()
    before = list(root.handlers)
    path = logs.log_to_file()
    try:
        session = _signed_session(tmp_path, good_folder, "tiny.onnx")
        session.close()
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "slidetally.log"
    assert "model loaded: tiny" in text and "12 of 12 item(s) classified with tiny" in text


def test_a_batch_stored_in_one_statement_keeps_what_another_process_stored_first(tmp_path, good_folder):
    """New files' calls go in with one statement per batch; a call another SlideTally stored first
    (and the technician's work on it) is kept, a file named twice in a batch is stored once, and
    the audit chain stays verifiable."""
    from desktop.core.inference.decision import Call
    from desktop.core.inference.model import Model

    model = Model(make_tiny_model(tmp_path / "tiny.onnx"))
    first = Session.open(good_folder, model, tmp_path / "data")
    second = Session.open(good_folder, model, tmp_path / "data")  # another window on the same folder

    def call(name: str, ai: str, digest: str) -> Call:
        return Call(name, 10, 1.0, digest, ai, 0.9, (0.9, 0.05, 0.05), "b")

    first.store_calls([call("x.png", "a", "h1")], set())
    first.reclassify(["x.png"], "c", "Ann")
    second.store_calls([call("x.png", "b", "h1"), call("y.png", "b", "h2"), call("y.png", "c", "h2"),
                        call("caf\udce9.png", "a", "h3")], set())
    cells = {c.file: c for c in second.cells()}
    assert set(cells) == {"x.png", "y.png", "caf\udce9.png"}
    assert (cells["x.png"].ai_class, cells["x.png"].final_class) == ("a", "c")  # the first process's, kept
    assert cells["y.png"].ai_class == "b"  # the first of the two calls for y.png
    second.finish_run(3, False)
    assert second.store.integrity_problems() == [] and first.store.integrity_problems() == []
    assert [e.action for e in second.audit()] == ["reclassify", "classify"]
    first.close()
    second.close()


class _WriteBetweenReads:
    """A connection that lets another SlideTally commit an audit row right after the first read,
    as a second process on the same folder can."""

    def __init__(self, db, other: SessionStore) -> None:
        self._db, self._other, self._done = db, other, False

    def execute(self, *args):
        result = self._db.execute(*args)
        if not self._done and args[0].lstrip().upper().startswith("SELECT"):
            self._done = True
            with self._other.write(Actor("SlideTally", "")) as w:
                w.audit("classify", new="1 image")
        return result

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_the_integrity_check_reads_one_snapshot_while_another_process_writes(tmp_path, good_folder):
    path = tmp_path / "s.sqlite"
    mine, other = SessionStore(path, good_folder, "m", "sha"), SessionStore(path, good_folder, "m", "sha")
    real = mine.db
    try:
        with mine.write(Actor("SlideTally", "")) as w:
            w.audit("classify", new="40 images")  # a chain with a head to compare against
        mine.db = _WriteBetweenReads(real, other)
        assert mine.integrity_problems() == []
        mine.db = real
        assert mine.integrity_problems() == [], "the row written meanwhile is part of an intact chain"
    finally:
        mine.db = real
        mine.close()
        other.close()
