"""CSV exports open right in Excel (BOM, RFC 4180), name their model and operator, and are atomic."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import pytest
from conftest import random_rgb, write_image

from desktop.core.errors import ExportError
from desktop.core.inference.model import Model
from desktop.core.records.session import Session
from desktop.core.report.session_report import session_report
from desktop.outlets.csv import export_csv


@pytest.fixture
def classified(tmp_path, tiny_model):
    folder = tmp_path / "src"
    folder.mkdir()
    write_image(folder / 'cell, "quoted".png', random_rgb(1))
    write_image(folder / "Zelle_ü.png", random_rgb(2))
    (folder / "broken.jpg").write_bytes(b"")
    session = Session.open(folder, Model(tiny_model), tmp_path / "data")
    session.classify()
    return session


def _read(path):
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 BOM for Excel"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def test_per_image_and_summary_csv(tmp_path, classified):
    out = tmp_path / "out"
    out.mkdir()
    cells = classified.cells()
    export_csv(session_report(classified, operator="Dr. Müller", when="2026-11-24T10:00:00"), cells, out / "cells.csv",
               out / "summary.csv")
    rows = _read(out / "cells.csv")
    assert rows[0][0] == "file"  # the header row first: no comment lines for scripts to skip
    body = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert set(body) == {'cell, "quoted".png', "Zelle_ü.png", "broken.jpg"}
    assert body["broken.jpg"]["unreadable"].startswith("empty")
    assert body["Zelle_ü.png"]["ai_class"] in classified.info.class_keys
    assert b'"cell, ""quoted"".png"' in (out / "cells.csv").read_bytes()
    assert b"\r\n" in (out / "cells.csv").read_bytes()
    summary = _read(out / "summary.csv")
    identity = {r[1]: r[5] for r in summary if r and r[0] == "identity"}
    assert identity["exported_by"] == "Dr. Müller" and identity["assay"] == "Tiny blood-differential"
    assert identity["status"] == "Not signed off — preliminary" and identity["report_status"] == "preliminary"
    sidecar = json.loads((out / "cells.json").read_text(encoding="utf-8"))
    assert sidecar["identity"]["exported_by"] == "Dr. Müller" and sidecar["delimiter"] == ","
    totals = {r[1]: r for r in summary if r and r[0] == "total"}
    assert totals["images"][3] == "3" and totals["unreadable"][3] == "1"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_export_to_read_only_folder_is_a_clear_error_and_leaves_nothing(tmp_path, classified):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, stat.S_IREAD | stat.S_IEXEC)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(ExportError, match="Cannot write"):
            export_csv(session_report(classified), classified.cells(), locked / "c.csv", None)
        assert list(locked.iterdir()) == []
    finally:
        os.chmod(locked, stat.S_IRWXU)


def test_failed_write_keeps_the_previous_file_whole(tmp_path, classified, monkeypatch):
    target = tmp_path / "c.csv"
    target.write_text("previous export")

    def broken_replace(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ExportError, match="No space"):
        export_csv(session_report(classified), classified.cells(), target, None)
    assert target.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_export_into_a_missing_folder_is_a_clear_error(tmp_path, classified):
    with pytest.raises(ExportError, match="Cannot write"):
        export_csv(session_report(classified), classified.cells(), tmp_path / "gone" / "c.csv", None)


def test_the_csv_export_is_all_or_none(tmp_path, classified):
    """The GUI's and the library's CSV export writes the table, its sidecar and the summary together (issue 41): when
    the summary cannot be written, no table is left without it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "s.csv").mkdir()  # the summary's name is taken by a folder
    with pytest.raises(ExportError):
        export_csv(session_report(classified), classified.cells(), out / "c.csv", out / "s.csv")
    assert sorted(p.name for p in out.iterdir()) == ["s.csv"]
