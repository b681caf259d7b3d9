"""The bench's third walk (issue 40): a true verification sentence, the precision of every percentage,
and a corrected report nobody can miss."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import make_tiny_model

from desktop.core.lab.verification import _verdict
from desktop.core.records.session import Session
from desktop.core.report.precision import wilson
from desktop.outlets.csv import summary_rows


def test_verification_never_says_below_when_the_agreement_is_above_the_card():
    text, verified = _verdict(0.980, (0.943, 0.993), 150, 0.978)
    assert "below" not in text and verified is None and "98.0%" in text
    text, _ = _verdict(0.960, (0.930, 0.985), 150, 0.978)
    assert "below the card's 97.8%" in text


def test_the_wilson_interval_matches_the_textbook():
    low, high = wilson(50, 100)  # 50% of 100 cells: about 40-60% (Rümke's table: 40-60)
    assert low == pytest.approx(0.404, abs=0.002) and high == pytest.approx(0.596, abs=0.002)


@pytest.fixture
def blood_report(tmp_path, good_folder):
    classes = ("neutrophil", "lymphocyte", "monocyte")
    import json

    meta = {"classes": json.dumps([{"key": k, "label": k.title(), "group": "wbc", "hotkey": str(i + 1)}
                                   for i, k in enumerate(classes)])}
    model = make_tiny_model(tmp_path / "m.onnx", classes=classes, metadata_overrides=meta)
    s = Session.open(good_folder, model, tmp_path / "data")
    s.classify()
    s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
    yield s
    s.close()


def test_every_differential_percentage_carries_its_interval_in_every_outlet(blood_report, qtbot):
    from desktop.outlets.pdf import report_document
    from desktop.ui.summary_panel import SummaryPanel

    report = blood_report.report()
    rows = list(csv.reader(io.StringIO("\r\n".join(",".join(map(str, r)) for r in summary_rows(report)))))
    header = rows[0]
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_report(report)
    shown = panel.text.toPlainText()
    html = report_document(report, blood_report.folder).html
    for line in report.differential:
        r = line.result
        assert r.ci is not None and r.ci[0] <= r.value <= r.ci[1]
        low, high = wilson(r.count, report.wbc)
        assert r.ci == (round(100 * low, 1), round(100 * high, 1))
        row = dict(zip(header, next(x for x in rows if x[1] == line.key)))
        assert (row["ci_low"], row["ci_high"]) == tuple(r.ci_text().split("–"))
        assert r.ci_text() in shown and r.ci_text() in html
    assert f"here {report.wbc} white cells" in shown and "±" in html


def test_a_corrected_report_says_so_in_its_title_status_and_panel(blood_report, qtbot):
    from desktop.outlets.pdf import report_document

    s = blood_report
    s.set_identity("B-1", "", "Ana")
    s.sign_off("Ana")
    assert "CORRECTED" not in report_document(s.report(), s.folder).html
    s.reopen("Ana", "wrong specimen label")
    s.sign_off("Ana")
    report = s.report()
    assert report.corrected and report.record.status_line().startswith("CORRECTED report")
    assert "SlideTally report — CORRECTED" in report_document(report, s.folder).html
