"""The verification report's arithmetic on small fixtures with known answers, and the report
built from real signed-off sessions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_tiny_model, random_rgb, write_image

from desktop.core.errors import ActionRefused
from desktop.core.inference.model import Model
from desktop.core.lab.site_cells import signed_sessions
from desktop.core.lab.verification import bland_altman, build_report, cohen_kappa, report_rows, wilson
from desktop.core.records.session import Session
from desktop.core.report.summary import class_percentages


def test_wilson_interval_known_values():
    low, high = wilson(8, 10)  # Newcombe (1998), method 3: 0.4902 to 0.9433
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_cohen_kappa_known_values():
    # po = 0.70, pe = (25*30 + 25*20) / 50^2 = 0.50  ->  kappa = 0.40
    assert cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.40)
    assert cohen_kappa(np.diag([10, 20, 30])) == pytest.approx(1.0)


def test_bland_altman_limits():
    bias, sd, lower, upper = bland_altman([1.0, 2.0, 3.0])
    assert (bias, sd) == (pytest.approx(2.0), pytest.approx(1.0))
    assert lower == pytest.approx(2.0 - 1.959964) and upper == pytest.approx(2.0 + 1.959964)


def test_class_percentages_follow_the_differential_units(tmp_path):
    info = Model(make_tiny_model(tmp_path / "m.onnx", classes=("neutrophil", "lymphocyte", "monocyte"))).info
    values = class_percentages({"neutrophil": 6, "lymphocyte": 3, "monocyte": 1}, info)
    assert values == {"neutrophil": pytest.approx(60.0), "lymphocyte": pytest.approx(30.0), "monocyte": pytest.approx(10.0)}


@pytest.fixture
def two_signed_sessions(tmp_path):
    """Two sessions of 10 cells each, whose final calls differ from the AI calls in a known way."""
    model = Model(make_tiny_model(tmp_path / "m.onnx"))
    data = tmp_path / "data"
    changes = [3, 1]  # cells reclassified per session
    for n, changed in enumerate(changes):
        folder = tmp_path / f"slide{n}"
        folder.mkdir()
        for i in range(10):
            write_image(folder / f"c{i}.png", random_rgb(100 * n + i))
        s = Session.open(folder, model, data)
        s.classify()
        cells = s.cells()
        for c in cells[:changed]:
            s.reclassify([c.file], next(k for k in s.info.class_keys if k != c.ai_class), "Ana")
        s.set_identity(f"S-{n}", "", "Ana")
        s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
        s.sign_off("Ana")
        s.close()
    return model, data


def test_report_from_signed_sessions(two_signed_sessions):
    model, data = two_signed_sessions
    sessions = signed_sessions(data, model.info)
    assert sorted(s.name for s in sessions) == ["S-0", "S-1"]
    report = build_report(sessions, model.info)
    assert report.cells == 20 and report.sessions == 2
    assert report.confusion.sum() == 20 and np.trace(report.confusion) == 16
    assert report.agreement == pytest.approx(0.8) and report.corrected == 4
    assert report.agreement_ci == pytest.approx(wilson(16, 20))
    assert report.verified is None and "Too few" in report.verdict  # 20 cells: too few to judge
    for c in report.classes:  # sensitivity = diagonal / final count (column)
        i = report.class_keys.index(c.key)
        if c.n_final:
            assert c.sensitivity == pytest.approx(report.confusion[i, i] / report.confusion[:, i].sum())
    for s in report.per_session:
        assert sum(v for v in s.ai.values() if v is not None) == pytest.approx(100.0)
    limits = {lim.key: lim for lim in report.limits}
    for key, lim in limits.items():
        diffs = [s.ai[key] - s.final[key] for s in report.per_session]
        assert lim.bias == pytest.approx(np.mean(diffs)) and lim.sessions == 2
    rows = report_rows(report)
    assert rows[3][:3] == ["summary", "agreement", "0.8000"]


def test_a_session_of_another_model_file_or_unsigned_is_not_reported(two_signed_sessions, tmp_path):
    model, data = two_signed_sessions
    other = Model(make_tiny_model(tmp_path / "other.onnx", metadata_overrides={"provenance": '{"date": "x"}'}))
    assert signed_sessions(data, other.info) == []
    assert len(signed_sessions(data, model.info, since="2000-01-01")) == 2
    with pytest.raises(ActionRefused, match="in the future"):  # not "no sessions yet"
        signed_sessions(data, model.info, since="2999-01-01")
