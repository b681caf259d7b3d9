"""The bench's third walk (issue 40): a true verification sentence, the precision of every percentage,
and a corrected report nobody can miss."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import make_tiny_model

from desktop.core.lab.verification import _verdict
from desktop.core.records.session import Session
from desktop.core.report.precision import wilson
from desktop.core.report.session_report import session_report
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

    report = session_report(blood_report)
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
    assert "CORRECTED" not in report_document(session_report(s), s.folder).html
    s.reopen("Ana", "wrong specimen label")
    s.sign_off("Ana")
    report = session_report(s)
    assert report.corrected and report.record.status_line().startswith("CORRECTED report")
    assert "SlideTally report — CORRECTED" in report_document(report, s.folder).html


# --- J: the lab's rules come from the lab's policy file, not a per-user checkbox ----------------------

@pytest.fixture
def policy(tmp_path, monkeypatch):
    from desktop.core import policy as module

    path = tmp_path / "etc" / "lab.toml"
    path.parent.mkdir()
    monkeypatch.setattr(module, "policy_path", lambda: path)
    module.lab_policy.cache_clear()
    yield path
    module.lab_policy.cache_clear()


def test_the_lab_policy_file_sets_the_labs_rules_and_says_where_they_came_from(policy, tmp_path):
    from desktop.core.policy import lab_policy
    from desktop.ui.about import about_html

    assert lab_policy().allow_signer_login is False and "no lab policy file" in lab_policy().source
    intervals = tmp_path / "ri.json"
    intervals.write_text('{"source": "North Lab 2026", "intervals": {"neutrophil": [45, 70]}}', encoding="utf-8")
    policy.write_text(f'[verification]\nallow_signer_login = true\n[report]\nreference_intervals = "{intervals}"\n'
                      f'default_target_wbc = 200\n[lis]\nfolder = "{tmp_path / "lis"}"\n', encoding="utf-8")
    lab_policy.cache_clear()
    p = lab_policy()
    assert p.allow_signer_login and p.default_target_wbc == 200 and p.lis_folder == tmp_path / "lis"
    from desktop.core.report.summary import ReferenceIntervals

    assert ReferenceIntervals.load().source == "North Lab 2026"
    assert f"the lab policy file {policy}" in about_html([])
    policy.write_text("[report]\ndefault_target_wbc = 3\n", encoding="utf-8")
    lab_policy.cache_clear()
    assert lab_policy().default_target_wbc == 100 and "could not be used" in lab_policy().source


def test_verification_under_the_signers_login_follows_the_policy_and_no_checkbox_exists(policy, blood_report, qtbot,
                                                                                          tmp_path, monkeypatch):
    from conftest import open_window
    from PySide6.QtWidgets import QInputDialog

    from desktop.core.policy import lab_policy

    s = blood_report
    s.set_identity("B-2", "", "Ana")
    s.sign_off("Ana")  # under this login: the window's verification is under the same one
    folder, data = s.folder, s.store.path.parent.parent
    model_dir = s.info.path.parent
    s.close()
    window = open_window(qtbot, tmp_path, model_dir, data_root=data)
    assert not hasattr(window.menu, "same_login")  # nobody can tick the lab's rule away
    window.sessions.open_folder(folder)
    qtbot.waitUntil(lambda: window.sessions.session is not None and window.sessions.session.signed)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Ben", True))
    errors = []
    monkeypatch.setattr(window.feedback, "error", lambda title, text: errors.append(text))
    window.records.verify()
    assert errors and "policy file" in errors[0] and not window.sessions.session.record().verified_by
    policy.write_text("[verification]\nallow_signer_login = true\n", encoding="utf-8")
    lab_policy.cache_clear()
    window.records.verify()
    assert window.sessions.session.record().verified_by == "Ben"
    assert any(e.action == "same-account verification" for e in window.sessions.session.audit())
    window.sessions.close_session()


# --- I and L: one story after a foreign stop, and the small items -------------------------------------

def test_a_foreign_stop_is_one_story_in_the_status_bar_and_the_banner(qtbot, tmp_path, monkeypatch):
    from conftest import MODELS, SAMPLES, open_window, record_dialogs, shipped
    from PySide6.QtWidgets import QMessageBox

    shipped("breast-idc.onnx")
    answers = {"question": QMessageBox.StandardButton.No, "asked": []}
    record_dialogs(monkeypatch, answers)
    window = open_window(qtbot, tmp_path, MODELS)
    idc = next(i for i, m in enumerate(window.sessions.models) if m.key == "breast-idc")
    window.assay.setCurrentIndex(idc)
    window.sessions.open_folder(SAMPLES / "blood", guess=False)
    qtbot.waitUntil(lambda: any("look foreign" in a for a in answers["asked"]), timeout=30_000)
    message = window.statusBar().currentMessage()
    assert "stopped" in message and "sign off" not in message
    assert window.banner.isVisible() and "not classified" in window.banner.text()
    window.sessions.close_session()


def test_every_error_the_technician_reads_starts_with_a_capital(qtbot, tmp_path, monkeypatch):
    from conftest import open_window
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append(text))
    window = open_window(qtbot, tmp_path, tmp_path)
    window.feedback.error("Not verified", "no signed-off sessions of blood-pbc8 here")
    assert shown[-1] == "No signed-off sessions of blood-pbc8 here"


def test_the_target_count_is_not_shown_without_a_blood_session(qtbot):
    from desktop.ui.summary_panel import SummaryPanel

    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_report(None)
    assert not panel.target.isVisible() and not panel.target_row.isVisible()


def test_exports_are_named_by_the_specimen_and_accuracy_reads_the_same_everywhere(blood_report, qtbot, tmp_path,
                                                                                  monkeypatch):
    from conftest import open_window
    from PySide6.QtWidgets import QFileDialog

    from desktop.core.report.assay_report import percent_text
    from desktop.outlets.pdf import report_document

    s = blood_report
    s.set_identity("B-2026/0412", "", "Ana")
    report = session_report(s)
    html = report_document(report, s.folder).html
    assert percent_text(report.model.accuracy) in html or report.model.accuracy is None
    sha = report.model.sha256
    assert f"{sha[:32]}<br>{sha[32:]}" in html  # never one character wrapped onto its own line
    folder, data, models = s.folder, s.store.path.parent.parent, s.info.path.parent
    s.close()
    window = open_window(qtbot, tmp_path, models, data_root=data)
    window.sessions.open_folder(folder, guess=False)
    qtbot.waitUntil(lambda: window.sessions.session is not None and not window.sessions.is_classifying())
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda parent, title, default, kind: (asked.append(default), ("", ""))[1])
    window.exports._ask_save_path("Export", ".pdf", "PDF (*.pdf)")
    assert asked and Path(asked[0]).name == "B-2026_0412.pdf"
    window.sessions.close_session()


def test_no_text_view_breaks_a_word_in_two(qtbot, tmp_path):
    """L: headers such as "Lymphocyte" wrapped mid-word ("Lymphocyt" / "e") in the Verification report: every rich-text
    view in the window and its dialogs breaks lines between words only."""
    from conftest import MODELS, open_window
    from PySide6.QtGui import QTextOption
    from PySide6.QtWidgets import QTextBrowser

    from desktop.core.resources import resource
    from desktop.ui.lab_tools import VerificationDialog
    from desktop.ui.preview import CellViewer

    window = open_window(qtbot, tmp_path, MODELS)
    window.sessions.open_folder(resource("samples", "blood"), guess=True)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying(), timeout=60_000)
    info = window.sessions.info
    views = [VerificationDialog(window, window.sessions.model(info), tmp_path / "data"),
             CellViewer(window, window.sessions.folder, info, window.proxy, 0, lambda *a: False, lambda *a: False)]
    texts = window.findChildren(QTextBrowser) + [t for v in views for t in v.findChildren(QTextBrowser)]
    assert len(texts) >= 3
    assert all(t.wordWrapMode() == QTextOption.WrapMode.WordWrap for t in texts)
    for view in views:
        view.close()
    window.sessions.close_session()
