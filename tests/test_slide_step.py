"""The slide-level step declared in a patch model's metadata: the core blends each patch's
P(IDC) with its neighbours' over the whole slide before the decision rule, for the CLI and the
GUI alike; it never touches a call the technician has made."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_image
from patch_model import NORMAL_RGB, PATCH, make_patch_model

from desktop.core.errors import ModelError
from desktop.core.inference.model import Model
from desktop.core.inference.slide import PatchGrid
from desktop.core.inference.slide_step import SlideStep
from desktop.core.records.session import Session
from desktop.core.report.summary import decided_p_positive, idc_summary

STEP = SlideStep(radius=1, weight=0.5).as_metadata()
AMBIGUOUS_RGB = (140, 60, 100)  # mean red 140: P(IDC) = sigmoid(1.2) ~ 0.77 on its own
IDC_RGB = (200, 60, 100)


def write_slide(folder, layout: list[str], origin=(1001, 501)) -> dict[tuple[int, int], str]:
    """I IDC, N normal, A ambiguous, . no patch; {(column, row): file name}."""
    colours = {"I": IDC_RGB, "N": NORMAL_RGB, "A": AMBIGUOUS_RGB}
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for r, line in enumerate(layout):
        for c, mark in enumerate(line):
            if mark != ".":
                name = f"9001_idx5_x{origin[0] + c * PATCH}_y{origin[1] + r * PATCH}_class0.png"
                write_image(folder / name, np.full((PATCH, PATCH, 3), colours[mark], np.uint8))
                names[(c, r)] = name
    return names


def test_a_lone_positive_among_normals_is_pulled_down_and_one_inside_a_tumour_is_not():
    grid = PatchGrid(50, 50)
    offsets = [(x * 50 + 1, y * 50 + 1) for y in range(3) for x in range(6)]
    p = np.full(18, 0.02)
    p[1 * 6 + 1] = 0.77  # ambiguous, among normals
    for x in (3, 4, 5):
        p[[x, 6 + x, 12 + x]] = 0.999  # a tumour, columns 3-5
    p[1 * 6 + 4] = 0.77  # ambiguous, inside it
    slide = SlideStep(1, 0.5).apply(p, offsets, grid)
    assert slide[7] < 0.5 < p[7]
    assert slide[10] > 0.9
    order = np.random.default_rng(0).permutation(18)  # the answer does not depend on the files' order
    np.testing.assert_allclose(SlideStep(1, 0.5).apply(p[order], [offsets[i] for i in order], grid), slide[order])
    np.testing.assert_allclose(SlideStep(1, 0.0).apply(p, offsets, grid), p)
    alone = SlideStep(1, 0.5).apply(np.array([0.77, 0.02]), [(0, 0), (500, 500)], grid)
    np.testing.assert_allclose(alone, [0.77, 0.02])  # no neighbour: its own probability


def test_the_session_calls_the_slide_step_and_says_so_in_the_audit(tmp_path):
    model = Model(make_patch_model(tmp_path / "m.onnx", extra_metadata={"slide_step": STEP}))
    plain = Model(make_patch_model(tmp_path / "plain.onnx"))
    names = write_slide(tmp_path / "slide", ["NNNIII", "NANIAI", "NNNIII"])
    with_step = Session.open(tmp_path / "slide", model, tmp_path / "data")
    with_step.classify()
    without = Session.open(tmp_path / "slide", plain, tmp_path / "data-plain")
    without.classify()
    calls = {c.file: c for c in with_step.cells()}
    plain_calls = {c.file: c for c in without.cells()}

    lone, inside = names[(1, 1)], names[(4, 1)]
    assert plain_calls[lone].ai_class == "idc" and calls[lone].ai_class == "normal"
    assert calls[inside].ai_class == "idc"
    assert calls[lone].probabilities == plain_calls[lone].probabilities  # the model's own output is kept
    summary = idc_summary(with_step.cells(), model.info)
    assert summary.ai_idc == 9
    # what the gallery label and the AI-only map show is the P the call was decided on, never
    # the raw 0.77 under a "No IDC" call
    decided = decided_p_positive(calls[lone], "idc")
    assert decided < model.info.decision_threshold < plain_calls[lone].probabilities[1]
    assert summary.heat[1, 1] == pytest.approx(decided)
    assert idc_summary(without.cells(), plain.info).ai_idc == 10
    steps = [e for e in with_step.audit() if e.action == "slide step"]
    assert len(steps) == 1 and "1 AI call(s) changed" in steps[0].reason
    with_step.close()
    without.close()


def test_new_neighbours_never_change_a_call_the_technician_has_made(tmp_path):
    model = Model(make_patch_model(tmp_path / "m.onnx", extra_metadata={"slide_step": STEP}))
    folder = tmp_path / "slide"
    names = write_slide(folder, ["A"])
    session = Session.open(folder, model, tmp_path / "data")
    session.classify()
    lone = names[(0, 0)]
    assert session.cells([lone])[0].ai_class == "idc"  # no neighbour yet: its own P
    session.confirm([lone], "Ana Ruiz")
    write_slide(folder, ["NNN", "N.N", "NNN"], origin=(1001 - PATCH, 501 - PATCH))  # normals all around it
    session.classify()
    cell = session.cells([lone])[0]
    session.close()
    assert (cell.ai_class, cell.final_class, cell.confirmed) == ("idc", "idc", True)


@pytest.mark.parametrize("value, message", [
    ('{"kind": "crf"}', "kind 'crf' is unknown"),
    ('{"kind": "neighbour-logit-mean", "weight": 2}', "weight must be between 0 and 1"),
    ("not json", "slide_step is not JSON"),
])
def test_a_slide_step_the_app_cannot_run_is_refused_at_load_with_the_reason(tmp_path, value, message):
    with pytest.raises(ModelError, match=message):
        Model(make_patch_model(tmp_path / "m.onnx", extra_metadata={"slide_step": value}))


def test_the_step_round_trips_through_the_metadata(tmp_path):
    model = Model(make_patch_model(tmp_path / "m.onnx", extra_metadata={"slide_step": STEP}))
    assert model.info.slide_step == SlideStep(1, 0.5)
    assert json.loads(STEP)["kind"] == "neighbour-logit-mean"


def test_the_cli_and_the_gui_give_the_same_fraction_through_the_shipped_step(qtbot, tmp_path):
    """The shipped IDC model declares its step; the CLI (a subprocess) and the real window (its
    worker thread, its adapter) call the bundled slide the same, and both went through the step."""
    import csv
    import subprocess
    import sys

    from conftest import ROOT, SAMPLES, open_window, shipped

    model = Model(shipped("breast-idc.onnx"))
    assert model.info.slide_step is not None
    folder = SAMPLES / "breast-idc-9022"
    out = subprocess.run([sys.executable, "-m", "desktop.cli", "classify", str(folder), "--model", str(model.info.path),
                          "--csv", str(tmp_path / "cells.csv"), "--data-dir", str(tmp_path / "cli")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    with (tmp_path / "cells.csv").open(encoding="utf-8-sig") as handle:
        cli_calls = {row["file"]: row["ai_class"] for row in csv.DictReader(handle)}
    window = open_window(qtbot, tmp_path, model.info.path.parent)
    window.assay.setCurrentIndex(window.assay.findData(model.info.key))
    window.sessions.open_folder(folder, guess=False)
    qtbot.waitUntil(lambda: not window.sessions.is_classifying() and window.gallery_model.rowCount() == 517,
                    timeout=120_000)
    session = window.sessions.session
    assert session.model.info.sha256 == model.info.sha256
    gui = idc_summary(session.cells(), model.info)
    gui_calls = {c.file: c.ai_class for c in window.gallery_model.cells}
    stepped = [e for e in session.audit() if e.action == "slide step"]
    window.close()
    assert cli_calls == gui_calls and len(gui_calls) == 517
    assert sum(v == "idc" for v in cli_calls.values()) == gui.ai_idc
    assert stepped  # the step changed some calls on this slide, and said so


@pytest.mark.parametrize("p, positive, shown", [
    (0.6399, False, "63.99%"), (0.6351, False, "63.5%"), (0.30, False, "30%"),
    (0.6401, True, "64%"), (0.64, True, "64%"), (0.97, True, "97%"),
])
def test_a_gallery_percentage_never_sits_on_the_wrong_side_of_the_threshold(p, positive, shown):
    from desktop.ui.gallery import percent_on_its_side

    assert percent_on_its_side(p, 0.64, positive) == shown
