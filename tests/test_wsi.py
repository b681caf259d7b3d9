"""Whole-slide images: the slide's scale and the level read, the tissue mask, streaming memory, and the
same calls through a slide as through the patch folder it was assembled from. Every slide is made here
(tests/slides.py: tifffile, JPEG tiles, levels 1/4/16, resolution tags)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT, make_tiny_model, shipped
from slides import PATCH_PX, patient_slide, write_pyramid

from desktop.core.errors import FolderError, ModelError
from desktop.core.inference.contract import IDC_MPP
from desktop.core.inference.model import Model
from desktop.core.inference.slide import PatchGrid
from desktop.core.inference.tissue import tissue_pixels, tissue_tiles
from desktop.core.inference.wsi import ScaleUnknown, SlideError, WholeSlide, choose_level
from desktop.core.records.session import Session
from desktop.core.report.session_report import session_report

pytest.importorskip("tifffile")
# A train patient (never a test one): 14 x 14 patches around its tumour's edge, half IDC.
PATIENT, WINDOW = "8917", (13, 15, 14)
PINK, PALE, GLASS = (200, 110, 170), (226, 214, 222), (246, 246, 246)


def _canvas_slide(path: Path, canvas: np.ndarray, upsample: int = 4, mpp: float | None = 1.0, **kw) -> Path:
    return write_pyramid(path, canvas, upsample, mpp, **kw)


def test_level_choice_by_mpp():
    # a 40x scan (0.25 µm) for a 4 µm model: level 0, 16x finer; a 20x scan with a 1/4 level: level 0 still
    assert choose_level((1.0, 4.0, 16.0), 0.25, 4.0) == 0
    # a 160x-equivalent scan: its 1/4 level is 16x finer than the model, and the cheapest that is
    assert choose_level((1.0, 4.0, 16.0, 64.0), 0.0625, 4.0) == 1
    # nothing 16x finer: the finest level there is
    assert choose_level((4.0, 1.0, 16.0), 1.0, 4.0) == 1
    # coarser than the model by more than 5%: refused, never upsampled
    with pytest.raises(SlideError, match="coarser"):
        choose_level((1.0,), 5.0, 4.0)


def test_slide_scale_is_read_from_the_file_and_tiles_land_where_the_model_expects(tmp_path):
    canvas = np.full((100, 150, 3), 255, np.uint8)  # 1 px = 4 µm, the model's scale
    canvas[50:100, 100:150] = PINK  # model tile (column 2, row 1)
    path = _canvas_slide(tmp_path / "s.tif", canvas, upsample=32, mpp=0.125, downsamples=(1, 2, 4))
    slide = WholeSlide(path, 4.0)
    assert slide.scale.mpp == pytest.approx(0.125, rel=1e-3) and "TIFF resolution" in slide.scale.source
    assert (slide.scale.level, slide.scale.downsample) == (1, 2.0)  # 0.25 µm: 16x finer than the model
    assert slide.model_size == (150, 100)
    tile = slide.read(100, 50, PATCH_PX, PATCH_PX)
    assert tile.shape == (50, 50, 3) and np.abs(tile.astype(int).mean(axis=(0, 1)) - PINK).max() < 4
    assert slide.read(50, 50, PATCH_PX, PATCH_PX).min() > 240  # the glass beside it


def test_slide_without_mpp_is_refused_in_one_sentence_and_mpp_given_is_used_and_reported(tmp_path):
    canvas = np.full((200, 200, 3), 255, np.uint8)
    canvas[50:150, 50:150] = PINK
    path = _canvas_slide(tmp_path / "no-scale.tif", canvas, mpp=None)
    with pytest.raises(ScaleUnknown, match="--mpp"):
        WholeSlide(path, 4.0)
    model = make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (50, 50), "idc-patch")
    with pytest.raises(FolderError, match="pixel size"):
        Session.open(path, model, tmp_path / "data")

    out = tmp_path / "out"
    base = [sys.executable, "-m", "desktop.cli", "classify", str(path), "--model", str(model), "--data-dir",
            str(tmp_path / "data"), "--summary", str(out / "summary.csv")]
    refused = subprocess.run(base, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "--mpp" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    out.mkdir()
    given = subprocess.run([*base, "--mpp", "1.0"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert given.returncode == 0, given.stderr
    summary = (out / "summary.csv").read_text(encoding="utf-8-sig")
    assert "Slide scale" in summary and "1 µm/px from the technician" in summary
    # the stored session's report, without --mpp again: the scale given is the session's
    report = subprocess.run([sys.executable, "-m", "desktop.cli", "report", str(path), "--data-dir", str(tmp_path / "data"),
                             "--model", str(model), "--summary", str(out / "again.csv")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "1 µm/px from the technician" in (out / "again.csv").read_text(encoding="utf-8-sig")


def _overview() -> np.ndarray:
    """An overview (8 px a model tile) of glass, tissue, pale tissue, pen and ink, as a scanner shows them."""
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(GLASS, 2, (160, 240, 3)), 0, 255).astype(np.uint8)
    rgb[16:80, 16:96] = PINK  # tissue: tile columns 2-11, rows 2-9
    rgb[40:44, 40:44] = GLASS  # a small hole in it (a lumen): filled
    rgb[16:80, 96:128] = PALE  # pale tissue (fat, loose stroma) beside it: kept
    rgb[100:108, 16:224] = (40, 160, 60)  # a green pen line: tile row 12-13
    rgb[120:136, 160:200] = (30, 60, 200)  # blue pen: rows 15-16, columns 20-24
    rgb[136:152, 16:48] = (20, 20, 20)  # black ink: rows 17-18, columns 2-5
    rgb[150:152, 120:122] = PINK  # a speck of dust
    return rgb


def test_tissue_mask_keeps_tissue_and_pale_tissue_and_drops_glass_pen_and_ink():
    tiles = tissue_tiles(tissue_pixels(_overview()))
    assert tiles[2:10, 2:12].all() and tiles[2:10, 12:16].all()  # tissue, its hole, the pale tissue
    assert tiles.sum() == 8 * 14  # nothing else: not the glass, the pen lines, the ink or the speck
    assert not tiles[12:14].any() and not tiles[15:17, 20:25].any() and not tiles[17:19, 2:6].any()


@pytest.fixture(scope="module")
def window_slide(tmp_path_factory):
    """A window of a train patient's slide at 16x (0.25 µm/px, as a 40x scan), and its patches in a folder."""
    patient = DATA / "idc" / PATIENT
    if not patient.is_dir():
        pytest.skip("the IDC data is not here")
    root = tmp_path_factory.mktemp("wsi")
    path, patches = patient_slide(patient, root / "window.tif", upsample=16, mpp=0.25, window=WINDOW)
    folder = root / "patches"
    folder.mkdir()
    for *_, patch in patches:
        shutil.copy(patch, folder / patch.name)
    return path, patches, folder


def _calls_by_place(session: Session, origin: tuple[int, int] = (0, 0)) -> dict[tuple[int, int], str]:
    grid = session.info.patch
    return {grid.place((c.x + origin[0], c.y + origin[1])): c.ai_class for c in session.cells() if c.ai_class}


def test_slide_gives_the_calls_of_the_patch_folder_it_was_assembled_from(window_slide, tmp_path):
    path, patches, folder = window_slide
    model = Model(shipped("breast-idc.onnx"))
    with_slide = Session.open(path, model, tmp_path / "data")
    with_slide.classify()
    with_folder = Session.open(folder, model, tmp_path / "data")
    with_folder.classify()
    # patch names give x = 1 + 50k in the patient's slide; the window starts at column 13, row 15
    by_slide = _calls_by_place(with_slide, (1 + WINDOW[0] * PATCH_PX, 1 + WINDOW[1] * PATCH_PX))
    by_folder = _calls_by_place(with_folder)
    common = by_slide.keys() & by_folder.keys()
    assert len(common) >= 0.95 * len(patches)  # the tissue mask finds the patches the data set kept
    agree = sum(by_slide[k] == by_folder[k] for k in common) / len(common)
    assert agree >= 0.99, f"{agree:.3f} of {len(common)} tiles called alike"
    slide_report, folder_report = session_report(with_slide), session_report(with_folder)
    # the AI's fraction over each one's own tiles (the mask's few missed edge patches included)
    assert abs(slide_report.ai_fraction.value - folder_report.ai_fraction.value) <= 3.0
    assert "0.25 µm/px from the file's TIFF resolution tags" in slide_report.record.slide_scale
    with_slide.close()
    with_folder.close()


def test_glass_is_neither_classified_nor_counted(window_slide, tmp_path):
    path, patches, _ = window_slide
    session = Session.open(path, make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (50, 50), "idc-patch"),
                           tmp_path / "data")
    session.classify()
    cells = session.cells()
    places = {(x // PATCH_PX, y // PATCH_PX) for x, y, *_ in patches}
    assert 0.95 * len(places) <= len(cells) <= len(places) + 5
    assert sum((c.x // PATCH_PX, c.y // PATCH_PX) not in places for c in cells) <= 5  # glass: (almost) never a tile
    assert session_report(session).slide.ai_patches == len(cells)
    again = session.classify()  # the slide is known by its bytes: nothing new to classify
    assert again.classified == 0 and not again.changes.any
    session.close()


STREAM_SCRIPT = """
import json, resource, sys
from desktop.core.inference.model import Model
from desktop.core.records.session import Session
model = Model(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
session = Session.open(sys.argv[1], model, sys.argv[3])
session.classify()
n = len(session.cells())
print(json.dumps({"peak_delta_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "tiles": n}))
"""


def test_slide_is_streamed_memory_stays_far_below_one_level(window_slide, tmp_path):
    """The window slide's level 0 is 11,200 px square (376 MB as RGB): read whole, the peak would rise by that."""
    path, _, _ = window_slide
    model = make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (50, 50), "idc-patch")
    run = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(path), str(model), str(tmp_path / "data")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    level0_mb = 11_200 * 11_200 * 3 / 2**20
    assert measured["tiles"] > 150
    assert measured["peak_delta_mb"] < level0_mb / 4, measured


def test_model_states_its_mpp_and_older_idc_models_get_the_documented_default(tmp_path):
    declared = make_tiny_model(tmp_path / "a.onnx", ("normal", "idc"), (50, 50), "idc-patch", {"mpp": "2.0"})
    assert Model(declared).info.mpp == 2.0
    older = make_tiny_model(tmp_path / "b.onnx", ("normal", "idc"), (50, 50), "idc-patch")
    assert Model(older).info.mpp == IDC_MPP == 4.0
    assert Model(make_tiny_model(tmp_path / "c.onnx")).info.mpp is None  # blood: whole images, no scale
    with pytest.raises(ModelError, match="mpp"):
        Model(make_tiny_model(tmp_path / "d.onnx", ("normal", "idc"), (50, 50), "idc-patch", {"mpp": "0"}))


def test_a_folder_may_hold_slides_and_a_slide_it_cannot_scale_is_a_row_with_its_reason(tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    canvas = np.full((200, 200, 3), 255, np.uint8)
    canvas[50:150, 50:150] = PINK
    _canvas_slide(folder / "scaled.tif", canvas, mpp=1.0)
    _canvas_slide(folder / "unscaled.tif", canvas, mpp=None)
    session = Session.open(folder, make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (50, 50), "idc-patch"),
                           tmp_path / "data")
    session.classify()
    cells = {c.file: c for c in session.cells()}
    assert {f for f in cells if f.startswith("scaled.tif#")} == {f"scaled.tif#x{x}_y{y}" for x in (50, 100) for y in (50, 100)}
    assert "pixel size" in cells["unscaled.tif"].unreadable
    assert PatchGrid(50, 50).place((cells["scaled.tif#x100_y50"].x, cells["scaled.tif#x100_y50"].y)) == (2, 1)
    session.close()


def test_a_damaged_slide_is_refused_in_one_sentence(tmp_path):
    damaged = tmp_path / "scan.svs"
    damaged.write_bytes(b"II*\x00" + bytes(range(256)) * 40)
    model = make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (50, 50), "idc-patch")
    with pytest.raises(FolderError, match=r"scan\.svs: .*whole-slide image"):
        Session.open(damaged, model, tmp_path / "data")


def test_a_slide_without_openslide_says_that_openslide_is_missing(tmp_path, monkeypatch):
    import desktop.core.inference.wsi as wsi

    slide = _canvas_slide(tmp_path / "scan.tif", np.full((400, 400, 3), PINK, np.uint8))

    def no_openslide():
        raise SlideError("whole-slide images need OpenSlide (openslide-python and openslide-bin), which is not "
                         "installed (libopenslide.so.1: cannot open shared object file)")

    monkeypatch.setattr(wsi, "_openslide", no_openslide)
    model = make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (50, 50), "idc-patch")
    with pytest.raises(FolderError, match=r"scan\.tif cannot be read: whole-slide images need OpenSlide"):
        Session.open(slide, model, tmp_path / "data")


def test_holes_inside_tissue_under_four_tiles_are_filled_and_larger_or_open_ones_kept():
    """The tissue mask's hole filling, pinned at its bound (issue 41: a mutation of it survived the tests)."""
    from desktop.core.inference.tissue import MASK_PX_PER_TILE, _cleaned

    side = 4 * MASK_PX_PER_TILE  # a hole of side*side/4 px is four tiles: the first size kept
    mask = np.zeros((12 * MASK_PX_PER_TILE, 30 * MASK_PX_PER_TILE), bool)
    mask[MASK_PX_PER_TILE:-MASK_PX_PER_TILE, :] = True
    small, bound = (20, 20), (20, 60)  # 15x15 px < 4 tiles; 16x16 px = 4 tiles
    mask[small[0]:small[0] + 15, small[1]:small[1] + 15] = False
    mask[bound[0]:bound[0] + side // 2, bound[1]:bound[1] + side // 2] = False
    mask[40:52, :12] = False  # a small gap at the image's edge: glass beyond the overview, not a hole
    cleaned = _cleaned(mask)
    # the 2x2 opening moves edges by a pixel: look inside each hole
    assert cleaned[small[0] + 2:small[0] + 13, small[1] + 2:small[1] + 13].all()
    assert not cleaned[bound[0] + 2:bound[0] + side // 2 - 2, bound[1] + 2:bound[1] + side // 2 - 2].any()
    assert not cleaned[42:50, :10].any()
