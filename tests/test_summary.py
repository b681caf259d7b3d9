"""Counts, the blood differential with its flags, the IDC fraction and the slide heat map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_model, write_image

from desktop.core.inference.folder import expand_tissue_images
from desktop.core.inference.model import Model
from desktop.core.inference.scan import scan_folder
from desktop.core.inference.slide import PatchGrid, is_background, patch_position
from desktop.core.records.domain import Cell, SessionRecord
from desktop.core.records.session import Session
from desktop.core.report.assay_report import build_report
from desktop.core.report.codes import DEFAULT_CODES
from desktop.core.report.summary import ReferenceIntervals, counts, idc_summary

BLOOD = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
GROUPS = {"erythroblast": "nrbc", "platelet": "platelet"}


@pytest.fixture
def blood_info(tmp_path):
    classes = json.dumps([{"key": k, "label": k.title(), "group": GROUPS.get(k, "wbc"), "hotkey": str(i + 1)}
                          for i, k in enumerate(BLOOD)])
    path = make_tiny_model(tmp_path / "b.onnx", classes=BLOOD, metadata_overrides={"classes": classes})
    return Model(path).info


def cell(i, ai, final=None, review=False, confirmed=False, unfamiliar=False, unreadable="", x=None, y=None, p=()):
    return Cell(i, f"c{i}.png", ai, 0.9, p, None, None, unfamiliar, review, "r" if review else "", unreadable, x, y,
                final, confirmed, None)


def _report(cells, info, reference=None):
    """The report the product builds (GUI panel, CLI, every outlet), not a side path of it."""
    record = SessionRecord("folder", info.key, info.version, info.sha256, "open")
    return build_report(cells, info, record, reference=reference, codes=DEFAULT_CODES)


def test_differential_percentages_nrbc_and_platelets(blood_info):
    cells = ([cell(i, "neutrophil") for i in range(60)] + [cell(100 + i, "lymphocyte") for i in range(30)]
             + [cell(200 + i, "monocyte") for i in range(10)] + [cell(300 + i, "erythroblast") for i in range(5)]
             + [cell(400 + i, "platelet") for i in range(7)])
    reference = ReferenceIntervals({"neutrophil": (40, 80), "lymphocyte": (20, 40), "monocyte": (2, 8)}, "test")
    report = _report(cells, blood_info, reference)
    assert report.wbc == 100 and report.platelets == 7
    assert report.result("neutrophil").value == 60.0 and report.result("neutrophil").flag == ""
    assert report.result("monocyte").value == 10.0 and report.result("monocyte").flag == "H"
    assert report.result("basophil").value == 0.0
    assert report.result("erythroblast").value == 5.0 and report.result("erythroblast").unit.symbol == "/100 WBC"
    assert report.result("platelet") is None and report.result("platelets_counted").value == 7
    assert not any("target" in w for w in report.warnings)


def test_final_call_counts_not_the_ai_call_and_fewer_than_target_warns(blood_info):
    cells = [cell(1, "neutrophil", final="lymphocyte"), cell(2, "neutrophil")]
    report = _report(cells, blood_info)
    assert report.result("lymphocyte").count == 1 and report.result("neutrophil").count == 1
    assert any("target is 100" in w for w in report.warnings)
    assert "Sign off anyway" in report.below_target()


def test_unfamiliar_and_unconfirmed_review_cells_are_excluded_and_counted(blood_info):
    cells = [cell(1, "neutrophil"), cell(2, "neutrophil", review=True, unfamiliar=True),
             cell(3, "monocyte", review=True), cell(4, "monocyte", review=True, confirmed=True, final="monocyte"),
             cell(5, None, unreadable="empty file")]
    tally = counts(cells, blood_info)
    assert tally.final["neutrophil"] == 1 and tally.final["monocyte"] == 1
    assert tally.pending_review == 2 and tally.unfamiliar_excluded == 1 and tally.unreadable == 1
    report = _report(cells, blood_info)
    assert report.wbc == 2 and report.tally.pending_review == 2 and report.tally.unfamiliar_excluded == 1
    assert any("Unfamiliar" in w for w in report.warnings)


def test_idc_fraction_and_heat_map_from_patch_positions(tmp_path):
    info = Model(make_tiny_model(tmp_path / "i.onnx", classes=("normal", "idc"), task="idc-patch", size=(50, 50))).info
    cells = [cell(1, "idc", x=0, y=0, p=(0.1, 0.9)), cell(2, "normal", x=50, y=0, p=(0.8, 0.2)),
             cell(3, "normal", final="idc", x=100, y=50, p=(0.6, 0.4)), cell(4, "normal", x=0, y=100, p=(0.9, 0.1))]
    slide = idc_summary(cells, info)
    assert slide.patches == 4 and slide.idc == 2 and slide.fraction == 0.5
    assert slide.heat.shape == (3, 3)
    assert slide.heat[0, 0] == pytest.approx(0.9) and np.isnan(slide.heat[1, 0])
    assert slide.calls[1, 2] == 1.0


def test_patch_position_from_dataset_names_and_tiles():
    assert patch_position("9022_idx5_x1001_y1751_class0.png") == (1001, 1751)
    assert patch_position("slide.png#x150_y200") == (150, 200)
    assert patch_position("cell.jpg") is None


def test_large_tissue_image_is_cut_into_patches_skipping_white_background(tmp_path, tiny_model):
    image = np.full((300, 400, 3), 245, np.uint8)
    image[0:100, 0:150] = (150, 60, 120)  # tissue in the top-left 2x3 patches
    folder = tmp_path / "tissue"
    folder.mkdir()
    write_image(folder / "slide.png", image)
    items = expand_tissue_images(scan_folder(folder), PatchGrid(50, 50))
    assert len(items) == 6
    assert {t.position for t in items} == {(x, y) for x in (0, 50, 100) for y in (0, 50)}
    assert is_background(image[200:250, 200:250])
    info_model = Model(make_tiny_model(tmp_path / "p.onnx", classes=("normal", "idc"), task="idc-patch", size=(50, 50)))
    session = Session.open(folder, info_model, tmp_path / "data")
    session.classify()
    stored = session.cells()
    assert len(stored) == 6 and all(c.x is not None for c in stored)
