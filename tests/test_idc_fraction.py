"""The IDC fraction a pathologist signs: one estimate over every tissue patch (Review included, at the
model's call until reviewed) with its 95% interval, the same in every outlet; Review on both sides of
the decision threshold; a per-cell table that explains itself; and a colour guard that stops a folder
of blood cells given to the tissue model."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import MODELS, SAMPLES, shipped

from desktop.core.inference.decision import decide
from desktop.core.inference.model import Model
from desktop.core.inference.model_info import ModelError, parse_metadata
from desktop.core.inference.quantification import (
    KINDS,
    FractionEstimator,
    ReviewBand,
    estimate_fraction,
    fit_estimator,
    fit_review_band,
)
from desktop.core.records.session import Session
from desktop.core.report.session_report import session_report
from desktop.outlets.csv import per_image_rows, sidecar, summary_rows
from desktop.outlets.fhir import fhir_json
from desktop.outlets.hl7 import hl7_message

WHEN = "2026-12-06T10:30:00+01:00"


@pytest.fixture(scope="module")
def idc_model() -> Model:
    shipped("breast-idc.onnx")
    return Model(MODELS / "breast-idc.onnx")


@pytest.fixture
def idc_session(tmp_path, idc_model):
    """The bundled IDC sample slide (a complete patient), classified by the bundled IDC model, nothing reviewed."""
    session = Session.open(SAMPLES / "breast-idc-9022", idc_model, tmp_path / "data")
    session.classify()
    yield session
    session.close()


def test_the_shipped_idc_model_declares_its_band_estimator_and_guard(idc_model):
    info = idc_model.info
    assert info.review_band is not None and info.review_band.low < info.decision_threshold < info.review_band.high
    assert info.fraction_estimator is not None and set(info.fraction_estimator.error_rates) == set(KINDS)
    assert info.colour_guard is not None
    card = (MODELS / "breast-idc.card.md").read_text(encoding="utf-8")
    assert f"version {info.version}," in card and "Review band" in card and "Val patients" in card


# --- the decision rule: Review on both sides ---------------------------------------------------------------

def test_near_threshold_calls_of_both_classes_go_to_review():
    p = np.array([0.55, 0.70, 0.95, 0.10])
    rule = decide(np.stack([1 - p, p], axis=1), None, 0.6, None, 0.64, ReviewBand(0.49, 0.76))
    assert rule.top.tolist() == [0, 1, 1, 0]
    assert rule.low_confidence.tolist() == [True, True, False, False]  # a "No IDC" and an IDC call both reviewed


def test_a_band_that_does_not_hold_the_threshold_is_refused(tmp_path):
    meta = {"slidetally.schema": "slidetally/1", "task": "idc-patch", "display_name": "x", "version": "1",
            "classes": json.dumps([{"key": "normal"}, {"key": "idc"}]), "input_size": "[50, 50]",
            "decision_threshold": "0.64", "review_band": "[0.7, 0.8]"}
    with pytest.raises(ModelError, match="decision threshold"):
        parse_metadata(meta, tmp_path / "m.onnx")


# --- the estimate and its interval ------------------------------------------------------------------------

def test_the_fraction_counts_review_patches_and_reviewed_patches_carry_no_doubt():
    estimator = FractionEstimator({k: 0.1 for k in KINDS}, 0.5)
    calls = np.array([True, False, False, True])
    p = np.array([0.9, 0.2, 0.6, 0.7])
    band = ReviewBand(0.5, 0.8)
    before = estimate_fraction(calls, p, np.zeros(4, bool), band, estimator, awaiting_review=2)
    assert before.value == 0.5 and before.patches == 4 and before.awaiting_review == 2
    assert before.low < 0.5 < before.high
    reviewed = estimate_fraction(calls, p, np.ones(4, bool), band, estimator)
    assert reviewed.low == reviewed.value == reviewed.high == 0.5


def test_the_band_is_symmetric_in_log_odds_and_keeps_to_its_budget():
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.3
    p = np.clip(np.where(labels, rng.beta(5, 2, 4000), rng.beta(2, 5, 4000)), 1e-4, 1 - 1e-4)
    band = fit_review_band(p, labels, 0.5, target_accuracy=0.999, budget=0.2)
    assert band.contains(p).mean() <= 0.2
    logit = np.log([band.low / (1 - band.low), band.high / (1 - band.high)])
    assert logit[0] == pytest.approx(-logit[1])


def test_the_fitted_error_rates_are_the_validation_rates_of_each_kind():
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.6, 0.6])
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    groups = np.array(["a", "a", "b", "b", "a", "b", "a", "b"])
    estimator = fit_estimator(p, labels, groups, 0.5, ReviewBand(0.4, 0.7))
    assert estimator.error_rates["outside_negative"] == 0.25
    assert estimator.error_rates["outside_positive"] == 0.5
    assert estimator.error_rates["band_positive"] == 0.5
    assert estimator.systematic >= 0


# --- a session: every patch counted, one number everywhere -------------------------------------------------

def test_a_review_patch_is_never_dropped_from_the_denominator(idc_session):
    cells = [c for c in idc_session.cells() if not c.unreadable]
    pending = [c for c in cells if c.needs_review]
    assert pending, "the sample slide has patches in the Review band"
    report = session_report(idc_session, when=WHEN)
    slide = report.slide
    assert slide.patches == len(cells) and slide.pending_review == len(pending)
    called_idc = sum((c.final_class or c.ai_class) == "idc" for c in cells)
    assert slide.idc == called_idc
    assert report.result("idc_fraction").value == round(100 * called_idc / len(cells), 1)
    # reviewing a patch changes its call, never the denominator
    target = next(c for c in pending if c.ai_class == "normal")
    idc_session.reclassify([target.file], "idc", "Ana Ruiz")
    after = session_report(idc_session, when=WHEN)
    assert after.slide.patches == len(cells) and after.slide.idc == called_idc + 1
    assert after.slide.pending_review == len(pending) - 1


def _summary_row(report, item):
    rows = list(csv.reader(io.StringIO("\r\n".join(",".join(map(str, r)) for r in summary_rows(report)))))
    header = rows[0]
    row = next(r for r in rows if r[1] == item)
    return dict(zip(header, row))


def test_the_headline_and_its_interval_are_the_same_in_every_outlet(idc_session, qtbot):
    from fhir.resources.R4B.bundle import Bundle

    from desktop.outlets.pdf import report_document
    from desktop.ui.summary_panel import SummaryPanel

    report = session_report(idc_session, when=WHEN)
    fraction = report.result("idc_fraction")
    value, ci = fraction.text(), fraction.ci_text()
    assert fraction.ci is not None and fraction.ci[0] <= fraction.value <= fraction.ci[1]
    row = _summary_row(report, "idc_fraction")
    assert (row["value"], row["ci_low"], row["ci_high"]) == (value, *ci.split("–"))
    message = hl7_message(report)
    obx = next(s for s in message.split("\r") if s.startswith("OBX") and "idc-patch-fraction" in s)
    assert obx.split("|")[5] == value and f"95% CI {ci}%" in message
    bundle = json.loads(fhir_json(report))
    Bundle.model_validate(bundle)
    observation = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert f"{observation['valueQuantity']['value']:.1f}" == value and ci in observation["note"][0]["text"]
    document = report_document(report, idc_session.folder)
    assert f"{value}%" in document.html and f"95% CI {ci}%" in document.html
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_report(report)
    shown = panel.text.toPlainText()
    assert f"IDC fraction: {value}%" in shown and f"95% CI {ci}%" in shown
    assert f"{report.slide.pending_review} awaiting review" in shown


def test_the_cli_prints_the_same_headline(idc_session, capsys):
    from desktop.cli import print_report

    report = session_report(idc_session, when=WHEN)
    print_report(report)
    out = capsys.readouterr().out
    fraction = report.result("idc_fraction")
    assert f"IDC fraction {fraction.text()}% (95% CI {fraction.ci_text()}%" in out


def test_the_per_cell_table_states_the_probability_each_call_was_made_on(idc_session):
    report = session_report(idc_session, when=WHEN)
    cells = idc_session.cells()
    rows = per_image_rows(cells, ["normal", "idc"])
    header, body = rows[0], rows[1:]
    assert "p_idc" in header and "p_idc_decided" in header
    col = {name: i for i, name in enumerate(header)}
    for row in body:
        if not row[col["ai_class"]]:
            continue
        decided, confidence = float(row[col["p_idc_decided"]]), float(row[col["ai_confidence"]])
        called_p = decided if row[col["ai_class"]] == "idc" else 1 - decided
        assert confidence == pytest.approx(called_p, abs=1e-4)  # ai_confidence is the called class's probability
        accepted = row[col["review"]] == 0
        if accepted:  # an accepted call lies outside the Review band, on its own side of the threshold
            assert (decided >= 0.64) == (row[col["ai_class"]] == "idc")
    notes = sidecar(report, __import__("desktop.outlets.csv", fromlist=["COMMA"]).COMMA, cells)["columns"]
    assert set(header) <= set(notes)


# --- the colour guard -----------------------------------------------------------------------------------

def test_blood_cells_given_to_the_tissue_model_stop_the_run_as_foreign(tmp_path, idc_model):
    session = Session.open(SAMPLES / "blood", idc_model, tmp_path / "data")
    try:
        result = session.classify(check_foreign=True)
    finally:
        session.close()
    assert result.foreign


def test_the_colour_guard_flags_blood_and_glass_and_spares_tissue(idc_model):
    from desktop.core.inference.imaging import load_prepared

    spec = idc_model.info.input
    blood = np.stack([load_prepared(p, spec) for p in sorted((SAMPLES / "blood").glob("*.jpg"))])
    tissue = np.stack([load_prepared(p, spec) for p in sorted((SAMPLES / "breast-idc-9022").glob("*.png"))])
    glass = np.full((4, 50, 50, 3), 238, np.uint8)
    _, ood_blood = idc_model.predict(blood)
    _, ood_tissue = idc_model.predict(tissue)
    _, ood_glass = idc_model.predict(glass)
    threshold = idc_model.info.ood_threshold
    assert (ood_blood > threshold).mean() >= 0.95
    assert (ood_glass > threshold).all()
    assert (ood_tissue > threshold).mean() <= 0.05
