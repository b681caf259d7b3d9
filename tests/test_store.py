"""The session store: every technician action is committed at once, audited, and survives
a killed process; sign-off locks the session until it is reopened with a reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT, make_tiny_model, random_rgb, write_image

from desktop.core.analysis import Analysis
from desktop.core.model import Model
from desktop.core.store import SessionLocked, SessionStore, SignOffRefused


@pytest.fixture
def session(tmp_path, tiny_model, good_folder):
    analysis = Analysis(good_folder, Model(tiny_model), tmp_path / "data")
    analysis.run(analysis.plan())
    return analysis.store


def test_session_lives_in_the_data_folder_not_the_source(session, good_folder, tmp_path):
    assert str(session.path).startswith(str(tmp_path / "data"))
    assert not any(p.suffix == ".sqlite" for p in good_folder.rglob("*"))
    assert session.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reclassify_keeps_ai_call_and_writes_an_audit_row(session):
    cell = session.cells()[0]
    new = next(k for k in session.info.class_keys if k != cell.ai_class)
    previous = session.reclassify([cell.id], new, "Ana")
    after = session.cell(cell.id)
    assert after.ai_class == cell.ai_class and after.final_class == new and after.changed and after.reviewer == "Ana"
    at, who, action, image_id, old, new_value, _ = session.audit()[-1]
    assert (who, action, image_id, old, new_value) == ("Ana", "reclassify", cell.id, cell.ai_class, new)
    session.restore(previous, "Ana")
    assert session.cell(cell.id).final_class is None
    assert session.audit()[-1][2] == "undo"


def _force_review(session, n):
    ids = [c.id for c in session.cells()[:n]]
    session.db.execute(f"UPDATE images SET review=1, review_reason='low confidence' WHERE id IN ({','.join(map(str, ids))})")
    return ids


def test_sign_off_is_refused_while_review_cells_are_unconfirmed(session):
    ids = _force_review(session, 2)
    with pytest.raises(SignOffRefused, match="2 cell"):
        session.sign_off("Ana")
    session.confirm(ids[:1], "Ana")
    session.reclassify(ids[1:], session.info.class_keys[0], "Ana")
    with pytest.raises(SignOffRefused, match="name"):
        session.sign_off("  ")
    session.sign_off("Ana")
    assert session.signed_off and session.meta("signed_by") == "Ana"
    with pytest.raises(SessionLocked):
        session.reclassify(ids, session.info.class_keys[1], "Ana")
    with pytest.raises(ValueError):
        session.reopen("Ana", "")
    session.reopen("Ana", "wrong patient label")
    assert not session.signed_off
    assert session.audit()[-1][2:] == ("reopen", None, None, None, "wrong patient label")


def test_a_session_made_by_another_model_version_is_kept_aside(tmp_path, good_folder):
    m1 = Model(make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"provenance": '{"date": "one"}'}))
    store = SessionStore(good_folder, m1.info, tmp_path / "data")
    store.db.execute("INSERT INTO images(relative) VALUES ('x.png')")
    store.close()
    m2 = Model(make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"provenance": '{"date": "two"}'}))
    fresh = SessionStore(good_folder, m2.info, tmp_path / "data")
    assert fresh.cells() == []
    archived = [p for p in (tmp_path / "data" / "sessions").iterdir() if p.name.count(".") >= 2]
    assert archived, "the old session must be archived, not deleted"


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from desktop.core.analysis import Analysis
    from desktop.core.model import Model
    analysis = Analysis(Path({folder!r}), Model(Path({model!r})), Path({data!r}))
    store = analysis.store
    if {review}:
        for i, cell in enumerate(store.cells()):
            store.reclassify([cell.id], store.info.class_keys[i % 3], "Kim")
            print("done", cell.id, flush=True)
            time.sleep(0.05)
    else:
        todo = analysis.plan()
        def slow(p):
            print("progress", p.done, flush=True)
            time.sleep(0.05)
        analysis.run(todo, slow, batch_size=4)
    print("finished", flush=True)
""")


def _run_and_kill(script: str, marker: str, after: int) -> list[str]:
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if sum(1 for entry in lines if entry.startswith(marker)) >= after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(10)
    assert "finished" not in lines, "the process should have been killed mid-way"
    return lines


def test_sigkill_mid_batch_and_mid_review_loses_no_committed_action(tmp_path, tiny_model):
    folder = tmp_path / "slides"
    folder.mkdir()
    for i in range(120):
        write_image(folder / f"c{i:03d}.png", random_rgb(i, (24, 24)))
    data = tmp_path / "data"
    fmt = dict(root=str(ROOT), folder=str(folder), model=str(tiny_model), data=str(data))
    _run_and_kill(KILL_SCRIPT.format(review=False, **fmt), "progress", 5)
    analysis = Analysis(folder, Model(tiny_model), data)
    stored = len(analysis.store.cells())
    assert stored >= 5 * 4  # every reported batch was committed
    assert len(analysis.plan()) == 120 - stored
    analysis.run(analysis.plan())
    analysis.store.close()

    lines = _run_and_kill(KILL_SCRIPT.format(review=True, **fmt), "done", 7)
    reported = [int(line.split()[1]) for line in lines if line.startswith("done")]
    store = Analysis(folder, Model(tiny_model), data).store
    changed = {c.id for c in store.cells() if c.reviewer == "Kim"}
    assert set(reported) <= changed
    audited = {row[3] for row in store.audit() if row[1] == "Kim"}
    assert set(reported) <= audited
