"""The session: the only writer of a folder's results. Every technician action is committed
at once and audited; files are known by their bytes; a signed-off session never changes
behind the technician's back; killing the process loses nothing committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT, make_tiny_model, random_rgb, write_image

from desktop.core.errors import ActionRefused, SessionLocked, SignOffRefused
from desktop.core.inference.model import Model
from desktop.core.records.session import Session
from desktop.core.report.session_report import session_report
from desktop.core.report.summary import counts
from desktop.outlets.csv import export_audit_csv, export_csv


@pytest.fixture
def session(tmp_path, tiny_model, good_folder):
    s = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    s.classify()
    yield s
    s.close()


def reopen(session: Session) -> Session:
    """The same folder and model, opened again as a new app start would."""
    session.close()
    return Session.open(session.folder, session.model, session.store.path.parents[1])


def other_class(session: Session, key: str) -> str:
    return next(k for k in session.info.class_keys if k != key)


def signed(session: Session) -> Session:
    session.set_identity("S-1", "", "Ana")
    session.confirm([c.file for c in session.cells() if c.needs_review], "Ana")
    session.sign_off("Ana")
    return session


def test_session_lives_in_the_data_folder_not_the_source(session, good_folder, tmp_path):
    assert str(session.store.path).startswith(str(tmp_path / "data"))
    assert not any(p.suffix == ".sqlite" for p in good_folder.rglob("*"))
    assert session.store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reclassify_keeps_ai_call_and_audits_operator_and_os_account(session):
    cell = session.cells()[0]
    new = other_class(session, cell.ai_class)
    previous = session.reclassify([cell.file], new, "Ana")
    after = session.cells([cell.file])[0]
    assert after.ai_class == cell.ai_class and after.final_class == new and after.changed and after.reviewer == "Ana"
    entry = session.audit()[-1]
    assert (entry.operator, entry.action, entry.file, entry.old, entry.new) == ("Ana", "reclassify", cell.file,
                                                                                 cell.ai_class, new)
    assert entry.os_user == session.os_user != ""
    session.restore(previous, "Ana")
    assert session.cells([cell.file])[0].final_class is None
    assert session.audit()[-1].action == "undo"


def test_an_action_without_an_operator_name_is_refused(session):
    with pytest.raises(ActionRefused, match="name"):
        session.reclassify([session.cells()[0].file], session.info.class_keys[0], "  ")


def test_events_announce_added_and_changed_cells(tmp_path, tiny_model, good_folder):
    s = Session.open(good_folder, Model(tiny_model), tmp_path / "data")
    added, changed, states = [], [], []
    s.events.cells_added.connect(added.extend)
    s.events.cells_changed.connect(changed.extend)
    s.events.state.connect(states.append)
    s.classify()
    assert sorted(c.file for c in added) == sorted(c.file for c in s.cells())
    first = added[0]
    s.reclassify([first.file], other_class(s, first.ai_class), "Ana")
    assert [c.file for c in changed] == [first.file] and changed[0].final_class != first.ai_class
    s.set_identity("S-1", "P-9", "Ana")
    assert states[-1].specimen_id == "S-1" and states[-1].patient_id == "P-9"
    s.close()


def test_touched_file_with_the_same_bytes_keeps_its_correction(session, good_folder):
    cell = session.cells()[0]
    new = other_class(session, cell.ai_class)
    session.reclassify([cell.file], new, "Ana")
    os.utime(good_folder / cell.file, (1, 1))  # touched: new mtime, same bytes
    again = reopen(session)
    result = again.classify()
    assert result.classified == 0
    kept = again.cells([cell.file])[0]
    assert kept.final_class == new and not kept.file_changed
    again.close()


def test_changed_bytes_in_an_open_session_get_a_new_call_and_the_old_one_stays_in_the_audit(session, good_folder):
    cell = session.cells()[0]
    new = other_class(session, cell.ai_class)
    session.reclassify([cell.file], new, "Ana")
    write_image(good_folder / cell.file, random_rgb(1234))
    again = reopen(session)
    result = again.classify()
    assert result.classified == 1 and result.changes.changed == (cell.file,)
    after = again.cells([cell.file])[0]
    assert after.file_changed and after.final_class is None and not after.confirmed
    entry = next(e for e in again.audit() if e.action == "file changed")
    assert entry.file == cell.file and f"final {new} by Ana" in entry.old
    again.close()


def test_missing_file_is_kept_marked_and_not_counted(session, good_folder):
    cell = session.cells()[0]
    (good_folder / cell.file).unlink()
    again = reopen(session)
    again.classify()
    cells = again.cells()
    assert len(cells) == 12
    gone = next(c for c in cells if c.file == cell.file)
    assert gone.missing
    tally = counts(cells, again.info)
    assert tally.total == 11 and tally.missing == 1 and sum(tally.ai.values()) == 11 - tally.unreadable
    assert any(e.action == "file missing" and e.file == cell.file for e in again.audit())
    again.close()


def test_an_empty_folder_never_wipes_a_session(session, good_folder):
    for path in good_folder.iterdir():  # an unmounted share looks like an empty mount point
        path.rename(good_folder.parent / path.name)
    again = reopen(session)
    notices = []
    again.events.notice.connect(notices.append)
    result = again.classify()
    assert not result.applied and result.changes.folder_empty
    assert len(again.cells()) == 12 and not any(c.missing for c in again.cells())
    assert notices and "empty or unreachable" in notices[0]
    again.close()


def test_a_signed_session_is_never_modified_by_a_rescan(session, good_folder, tmp_path):
    signed(session)
    before = session.cells()
    audit_before = len(session.audit())
    first, second = before[0].file, before[1].file
    write_image(good_folder / first, random_rgb(777))  # changed
    (good_folder / second).unlink()  # missing
    write_image(good_folder / "new_cell.png", random_rgb(778))  # new
    os.utime(good_folder / before[2].file, (1, 1))  # touched
    again = reopen(session)
    notices = []
    again.events.notice.connect(notices.append)
    result = again.classify()
    assert not result.applied and result.classified == 0
    assert result.changes.new == ("new_cell.png",) and result.changes.changed == (first,)
    assert result.changes.missing == (second,)
    assert again.cells() == before and len(again.audit()) == audit_before
    assert notices and "signed off" in notices[0] and first in notices[0]
    # every export names the changes it did not take in
    out = tmp_path / "summary.csv"
    export_csv(session_report(again, operator="Ana"), again.cells(), None, out)
    text = out.read_text(encoding="utf-8-sig")
    assert "Folder changed since sign-off" in text and "new_cell.png" in text
    # only a reopen with a reason lets them in
    again.reopen("Ana", "late images from the analyser")
    result = again.classify()
    assert result.applied and set(result.changes.changed) == {first}
    files = {c.file: c for c in again.cells()}
    assert "new_cell.png" in files and files[second].missing and files[first].file_changed
    again.close()


def test_sign_off_is_refused_while_review_cells_are_unconfirmed_or_without_specimen(tmp_path, good_folder):
    model = Model(make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"review_threshold": "0.99"}))
    s = Session.open(good_folder, model, tmp_path / "data")
    s.classify()
    files = [c.file for c in s.cells()]
    with pytest.raises(SignOffRefused, match="specimen"):
        s.sign_off("Ana")
    s.set_identity("S-1", "", "Ana")
    with pytest.raises(SignOffRefused, match="12 cell"):
        s.sign_off("Ana")
    s.confirm(files[:6], "Ana")
    s.reclassify(files[6:], s.info.class_keys[0], "Ana")
    with pytest.raises(SignOffRefused, match="name"):
        s.sign_off("  ")
    s.sign_off("Ana")
    record = s.record()
    assert record.signed and record.signed_by == "Ana" and record.signed_at
    with pytest.raises(SessionLocked):
        s.reclassify(files[:1], s.info.class_keys[1], "Ana")
    with pytest.raises(SessionLocked):
        s.restore([], "Ana")
    s.close()


def test_reopened_session_exports_say_so_until_signed_again(session, tmp_path):
    signed(session)
    out = tmp_path / "c.csv"
    export_csv(session_report(session, operator="Ana"), session.cells(), None, out)
    text = out.read_text(encoding="utf-8-sig")
    assert "Signed off " in text and "by Ana" in text
    with pytest.raises(ActionRefused):
        session.reopen("Ben", "")
    session.reopen("Ben", "wrong patient label")
    export_csv(session_report(session, operator="Ana"), session.cells(), None, out)
    text = out.read_text(encoding="utf-8-sig")
    assert "Reopened" in text and "by Ben: wrong patient label — not signed off" in text
    assert "Signed off 20" not in text
    entry = session.audit()[-1]
    assert (entry.action, entry.operator, entry.reason) == ("reopen", "Ben", "wrong patient label")
    session.sign_off("Ben")
    assert session.record().status_line().startswith("CORRECTED report: signed off again")  # issue 40 K


def test_verification_is_a_second_person(session):
    signed(session)
    with pytest.raises(SignOffRefused, match="second person"):
        session.verify("ana")
    with pytest.raises(SignOffRefused, match="another computer login"):
        session.verify("Ben")  # a second name typed under the signer's own login is not a second person
    session.os_user = "ben"
    session.verify("Ben")
    record = session.record()
    assert record.verified_by == "Ben" and "verified" in record.status_line()


def test_the_lab_may_allow_the_same_login_and_the_audit_says_so(session):
    signed(session)
    session.verify("Ben", allow_same_account=True)
    assert session.record().verified_by == "Ben"
    row = session.audit()[-1]
    assert row.action == "same-account verification" and "setting" in row.reason
    assert not session.store.integrity_problems()


def test_audit_csv_lists_every_change(session, tmp_path):
    cell = session.cells()[0]
    session.reclassify([cell.file], other_class(session, cell.ai_class), "Ana")
    signed(session)
    out = tmp_path / "audit.csv"
    export_audit_csv(session.audit(), out, session.record(), "now")
    import json

    import pandas

    table = pandas.read_csv(out)  # default arguments: a plain table, header row first
    assert {"reclassify", "sign-off"} <= set(table["action"]) and list(table.columns)[:2] == ["time", "operator"]
    about = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert about["record"]["Specimen ID"] == "S-1"


def test_a_session_made_by_another_model_file_is_kept_aside(tmp_path, good_folder):
    m1 = Model(make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"provenance": '{"date": "one"}'}))
    s = Session.open(good_folder, m1, tmp_path / "data")
    s.classify()
    s.close()
    # same key, same version, other bytes: bound by the file's SHA-256, not its metadata
    m2 = Model(make_tiny_model(tmp_path / "m.onnx", metadata_overrides={"provenance": '{"date": "two"}'}))
    assert m2.info.version == m1.info.version and m2.info.sha256 != m1.info.sha256
    fresh = Session.open(good_folder, m2, tmp_path / "data")
    assert fresh.cells() == []
    archived = [p for p in (tmp_path / "data" / "sessions").iterdir() if p.name.count(".") >= 2]
    assert archived, "the old session must be archived, not deleted"
    fresh.close()


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session
    session = Session.open(Path({folder!r}), Model(Path({model!r})), Path({data!r}))
    if {review}:
        for i, cell in enumerate(session.cells()):
            session.reclassify([cell.file], session.info.class_keys[i % 3], "Kim")
            print("done", cell.file, flush=True)
            time.sleep(0.05)
    else:
        def slow(p):
            print("progress", p.done, flush=True)
            time.sleep(0.05)
        session.classify(slow, batch_size=4)
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
    s = Session.open(folder, Model(tiny_model), data)
    stored = len(s.cells())
    assert stored >= 5 * 4  # every reported batch was committed
    assert len(s.changes().new) == 120 - stored
    s.classify()
    s.close()

    lines = _run_and_kill(KILL_SCRIPT.format(review=True, **fmt), "done", 7)
    reported = {line.split()[1] for line in lines if line.startswith("done")}
    s = Session.open(folder, Model(tiny_model), data)
    changed = {c.file for c in s.cells() if c.reviewer == "Kim"}
    assert reported <= changed
    audited = {e.file for e in s.audit() if e.operator == "Kim"}
    assert reported <= audited
    s.close()
