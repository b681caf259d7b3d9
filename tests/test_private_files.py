"""Sessions hold specimen and patient IDs: their folder is 0700 and every file SQLite writes there 0600, whatever the
umask, also for a session an older version left 0644 in a 0755 folder (issue 32)."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from desktop.core.records.domain import Actor
from desktop.core.records.store import SessionStore, session_path
from desktop.core.resources import user_data_dir

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _open_and_write(root, folder):
    store = SessionStore(session_path(root, folder, "blood"), folder, "blood", "0" * 64)
    with store.write(Actor("tester", "tester")) as w:
        w.set_meta("note", "specimen S-1")
    return store


def test_session_folder_0700_and_files_0600(tmp_path, umask_022):
    store = _open_and_write(tmp_path / "data", tmp_path)
    try:
        sessions = store.path.parent
        assert mode(sessions) == 0o700
        files = sorted(sessions.iterdir())
        assert {p.name.rsplit(".sqlite", 1)[-1] for p in files} >= {"", "-wal", "-shm"}, files  # WAL files exist now
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        store.close()


def test_an_older_session_left_readable_is_tightened(tmp_path, umask_022):
    store = _open_and_write(tmp_path / "data", tmp_path)
    store.close()
    sessions = store.path.parent
    sessions.chmod(0o755)
    for p in sessions.iterdir():
        p.chmod(0o644)
    store = _open_and_write(tmp_path / "data", tmp_path)
    try:
        assert mode(sessions) == 0o700
        assert all(mode(p) == 0o600 for p in sessions.iterdir() if ".sqlite" in p.name)
        assert store.meta("note") == "specimen S-1"  # opened, not recreated
    finally:
        store.close()


def test_user_data_folder_is_private(tmp_path, monkeypatch, umask_022):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert mode(user_data_dir()) == 0o700
