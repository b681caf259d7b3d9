"""Patch size, stride and grid come from the model: a synthetic 32 px IDC model tiles, maps and
counts a slide on its own grid; the fraction and the map follow the technician's final calls while
the AI-only figures stay the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MODELS, write_image
from patch_model import PATCH, make_patch_model, paint_slide, write_patches

from desktop.core.errors import ModelError
from desktop.core.inference.folder import expand_tissue_images
from desktop.core.inference.model import Model
from desktop.core.inference.scan import scan_folder
from desktop.core.inference.slide import MAP_CELL_PX, PatchGrid, build_mosaic, call_overlay, probability_overlay
from desktop.core.records.session import Session
from desktop.core.report.summary import idc_summary

# 8 rows x 10 columns of 32 px: tissue in the top-left 5 x 6, IDC in 8 of its 30 patches.
TISSUE = [
    "NNNN......",
    "NNNNII....",
    "NNNNII....",
    "NNNNII....",
    "NNNNII....",
    "..........",
    "..........",
    "..........",
]
# Separate patch files 32 px apart, with a hole at (column 2, row 1); 5 of 11 called IDC.
PATCHES = [
    "NNIII",
    "NN.II",
    "NNNNN",
]


@pytest.fixture
def model32(tmp_path) -> Model:
    return Model(make_patch_model(tmp_path / "idc32.onnx"))


def classified(folder, model, data):
    session = Session.open(folder, model, data)
    session.classify()
    return session


def test_the_patch_grid_is_read_from_the_model_with_input_size_as_default(tmp_path, model32):
    assert model32.info.patch == PatchGrid(PATCH, PATCH)
    assert Model(MODELS / "breast-idc.onnx").info.patch == PatchGrid(50, 50)  # shipped, without the new keys
    strided = Model(make_patch_model(tmp_path / "s.onnx", extra_metadata={"patch_stride": "16"}))
    assert strided.info.patch == PatchGrid(PATCH, 16)
    for bad in ({"patch_stride": "0"}, {"patch_size": "32.5"}, {"patch_stride": "true"}):
        with pytest.raises(ModelError, match="whole number of pixels"):
            Model(make_patch_model(tmp_path / "bad.onnx", extra_metadata=bad))


def test_a_tissue_image_is_tiled_mapped_and_counted_in_the_models_32px_patches(tmp_path, model32):
    folder = tmp_path / "tissue"
    folder.mkdir()
    write_image(folder / "slide.png", paint_slide(TISSUE))
    tiles = expand_tissue_images(scan_folder(folder), model32.info.patch)
    assert {t.position for t in tiles} == {(32 * c, 32 * r) for r in range(5) for c in range(6 if r else 4)}
    assert all((t.width, t.height) == (PATCH, PATCH) for t in tiles)

    session = classified(folder, model32, tmp_path / "data")
    cells = session.cells()
    slide = idc_summary(cells, model32.info)
    session.close()
    assert len(cells) == 28
    assert slide.heat.shape == slide.calls.shape == (5, 6)
    idc_places = {(c, r) for r in range(1, 5) for c in (4, 5)}
    for r in range(5):
        for c in range(6):
            if r == 0 and c >= 4:
                assert np.isnan(slide.calls[r, c])  # glass: no tile
            else:
                assert slide.calls[r, c] == (1.0 if (c, r) in idc_places else 0.0)
                assert (slide.heat[r, c] > 0.5) == ((c, r) in idc_places)
    called_idc = sum(c.ai_class == "idc" for c in cells)
    assert called_idc == 8
    assert slide.fraction == pytest.approx(called_idc / len(cells)) == slide.ai_fraction


def test_patch_files_32px_apart_map_onto_a_contiguous_grid_from_their_first_offset(tmp_path, model32):
    folder = tmp_path / "patches"
    names = write_patches(folder, PATCHES, origin=(1001, 1751))
    session = classified(folder, model32, tmp_path / "data")
    cells = session.cells()
    slide = idc_summary(cells, model32.info)
    session.close()
    assert slide.grid == PatchGrid(PATCH, PATCH, (1001, 1751))
    assert slide.heat.shape == (3, 5)  # no empty margin up to x=1001, y=1751
    by_name = {c.file: c for c in cells}
    for (c, r), name in names.items():
        assert slide.grid.place((by_name[name].x, by_name[name].y)) == (c, r)
        assert slide.calls[r, c] == (1.0 if PATCHES[r][c] == "I" else 0.0)
    assert np.isnan(slide.heat[1, 2]) and np.isnan(slide.calls[1, 2])  # the hole stays a hole
    assert slide.idc == 5 and slide.patches == 14 and slide.fraction == pytest.approx(5 / 14)


def test_a_declared_stride_places_overlapping_tiles_and_the_mosaic_on_its_grid(tmp_path):
    info = Model(make_patch_model(tmp_path / "s.onnx", extra_metadata={"patch_stride": json.dumps(16)})).info
    folder = tmp_path / "tissue"
    folder.mkdir()
    write_image(folder / "slide.png", paint_slide(["NNNN", "NNNN", "NNNN", "NNNN"]))  # 128 px square
    tiles = expand_tissue_images(scan_folder(folder), info.patch)
    # every 16 px, down to the last tile that is still at least half a patch inside the image
    assert sorted({t.position.x for t in tiles}) == list(range(0, 128 - 16 + 1, 16))
    assert {(t.width, t.height) for t in tiles if max(t.position) <= 96} == {(PATCH, PATCH)}
    grid = info.patch.fitted([t.position for t in tiles])
    mosaic = build_mosaic([(t.position, np.full((t.height, t.width, 3), 90, np.uint8)) for t in tiles], grid, 10)
    assert mosaic.shape == (8 * 10, 8 * 10, 3)


def test_a_correction_changes_the_final_map_and_fraction_not_the_ai_only_ones(tmp_path, model32):
    folder = tmp_path / "patches"
    names = write_patches(folder, PATCHES, origin=(1001, 1751))
    session = classified(folder, model32, tmp_path / "data")
    info = model32.info
    before = idc_summary(session.cells(), info)
    session.reclassify([names[(0, 2)]], "idc", "Ana Ruiz")  # a normal-looking patch the technician calls IDC
    after = idc_summary(session.cells(), info)
    session.close()

    assert before.fraction == pytest.approx(5 / 14) and after.fraction == pytest.approx(6 / 14)
    assert after.ai_fraction == before.ai_fraction == pytest.approx(5 / 14)
    assert (after.ai_idc, after.ai_patches) == (5, 14)
    assert before.calls[2, 0] == 0.0 and after.calls[2, 0] == 1.0
    np.testing.assert_array_equal(after.heat, before.heat)  # the model's probabilities are the model's

    cell_px = MAP_CELL_PX
    changed = np.any(call_overlay(after.calls, None, cell_px) != call_overlay(before.calls, None, cell_px), axis=2)
    rows, cols = np.nonzero(changed)
    assert {(c // cell_px, r // cell_px) for r, c in zip(rows, cols)} == {(0, 2)}  # that tile, and only it
    np.testing.assert_array_equal(probability_overlay(after.heat, None, cell_px),
                                  probability_overlay(before.heat, None, cell_px))
