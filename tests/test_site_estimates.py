"""Learning a lab, third pass (issue 37): a training length that holds at ten specimens, an interval
instead of a point, the lab's unlabelled cells, rare classes to Review, and the lab's own record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import DATA, make_tiny_model, specimen_tree

from desktop.core.inference.decision import decide
from desktop.core.lab.adaptation import rare_classes, specimen_interval

BCCD = DATA / "external_bccd"


def test_a_flat_cross_validation_curve_chooses_the_longer_schedule():
    pytest.importorskip("tensorflow")
    from trainer.adapt import longest_within_one_se

    flat = {2: [0.80, 0.76, 0.83], 6: [0.79, 0.78, 0.81], 12: [0.78, 0.79, 0.80]}  # best mean at 2, all within noise
    assert longest_within_one_se(flat) == 12
    clear = {2: [0.90, 0.91, 0.90], 12: [0.70, 0.71, 0.69]}  # a real loss is not bought
    assert longest_within_one_se(clear) == 2


def test_the_interval_resamples_specimens_not_cells():
    # ten specimens of 100 cells: eight called right throughout, two wrong throughout (one look per specimen)
    right = np.repeat([True] * 8 + [False] * 2, 100)
    by_specimen = specimen_interval(right, np.repeat(np.arange(10), 100))
    by_cell = specimen_interval(right, np.arange(1000))
    assert by_specimen[0] <= 0.8 <= by_specimen[1] and by_cell[0] <= 0.8 <= by_cell[1]
    assert by_specimen[1] - by_specimen[0] > 4 * (by_cell[1] - by_cell[0])


def test_calls_of_a_rarely_verified_class_go_to_review():
    assert rare_classes({"a": 30, "b": 9, "c": 0}) == ["b", "c"]
    p = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
    assert decide(p, None, 0.5, None).low_confidence.tolist() == [False, False]
    assert decide(p, None, 0.5, None, review_classes=(1,)).low_confidence.tolist() == [False, True]


def test_a_site_model_declares_its_rare_classes_and_the_app_sends_their_calls_to_review(tmp_path):
    from desktop.core.inference.decision import decide_for
    from desktop.core.inference.model import Model

    path = make_tiny_model(tmp_path / "site.onnx", metadata_overrides={"review_classes": json.dumps(["b"])})
    info = Model(path).info
    assert info.review_classes == ("b",)
    rule = decide_for(info, np.array([[0.01, 0.98, 0.01], [0.98, 0.01, 0.01]]), None)
    assert rule.low_confidence.tolist() == [True, False]


def test_the_quick_report_carries_the_interval_and_the_rare_classes(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    from test_adaptation import site_folder

    base = make_tiny_model(tmp_path / "base.onnx")
    fit = site_folder(tmp_path / "fit", {"a": 30, "b": 30, "c": 4})
    report = tmp_path / "quick.json"
    out = subprocess.run([sys.executable, "-m", "desktop.cli", "adapt", "--model", str(base), "--verified", str(fit),
                          "--site", "north", "--out", str(tmp_path / "m" / "s.onnx"), "--approved-by", "Dr Lee",
                          "--accept-loss", "test", "--report", str(report)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    figures = json.loads(report.read_text(encoding="utf-8"))
    lo, hi = figures["after"]["accuracy_interval"]
    assert lo <= figures["after"]["accuracy"] <= hi and figures["review_classes"] == ["c"]
    assert "accuracy after:" in out.stdout and "go to Review" in out.stdout


@pytest.mark.trainer
def test_deep_adaptation_takes_the_labs_unlabelled_cells_and_writes_the_labs_record(tmp_path, shared_data):
    pytest.importorskip("tensorflow")
    from trainer.adapt_cli import SITE_LAB_BOOK
    from trainer.adapt_cli import main as adapt_main
    from trainer.lab_book import LAB_BOOK

    verified = specimen_tree(tmp_path / "v", per_class=12, specimens=4)
    unlabelled = tmp_path / "u" / "spec9"
    unlabelled.mkdir(parents=True)
    for path in sorted((BCCD / "neutrophil").glob("*.jpg"))[40:52]:
        shutil.copy(path, unlabelled / path.name)
    trainer_book = LAB_BOOK.read_bytes()
    models, report = tmp_path / "data" / "models", tmp_path / "r.json"
    models.mkdir(parents=True)
    code = adapt_main(["--base", "blood-pbc8", "--verified", str(verified), "--unlabelled", str(tmp_path / "u"),
                       "--site", "North", "--candidate", str(models / "cand.onnx"), "--report", str(report),
                       "--max-epochs", "1", "--pseudo-epochs", "1", "--min-steps", "1", "--models-dir", str(models)])
    assert code == 0
    figures = json.loads(report.read_text(encoding="utf-8"))
    assert figures["unlabelled"]["offered"] == 12
    lo, hi = figures["after"]["accuracy_interval"]
    assert lo <= figures["after"]["accuracy"] <= hi
    assert "one standard error" in figures["epoch_rule"]
    assert LAB_BOOK.read_bytes() == trainer_book  # the trainer's own lab book is for the trainer's runs
    row = json.loads((models.parent / SITE_LAB_BOOK).read_text(encoding="utf-8").splitlines()[-1])
    assert row["task"] == "site-adapt:blood-pbc8"
    assert "95% interval" in (models / "cand.card.md").read_text(encoding="utf-8")


def test_the_cells_of_unsigned_sessions_are_the_labs_unlabelled_cells(tmp_path, good_folder):
    from desktop.core.inference.model import Model
    from desktop.core.lab.site_cells import unsigned_session_files
    from desktop.core.records.session import Session

    model = make_tiny_model(tmp_path / "tiny.onnx")
    data = tmp_path / "data"
    s = Session.open(good_folder, model, data)
    s.classify()
    s.close()
    files = unsigned_session_files(data, Model(model).info)
    assert sorted(p.name for p in files) == sorted(p.name for p in good_folder.iterdir())
    s = Session.open(good_folder, model, data)
    s.set_identity("B-1", "", "Ana")
    s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
    s.sign_off("Ana")
    s.close()
    assert unsigned_session_files(data, Model(model).info) == []  # a signed session's cells are verified ones
