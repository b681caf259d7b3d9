"""One item interface (issue 41, item 7): a file, a patch of a large tissue image and a tile of a whole slide
each read their pixels, give their content hash and carry their position as data; no module tells them apart
with isinstance, and a tile's stored name (its cell's key in the session) is written and read back in one place.
Every image here is real sample data or made from it: a 5 x 5 patch window of patient 9022 as a PNG tissue
image and as a tiled pyramidal TIFF (tests/slides.py)."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, make_tiny_model, write_image
from slides import write_pyramid

from desktop.core.inference.files import content_hash, hash_large_file
from desktop.core.inference.folder import expand_tissue_images
from desktop.core.inference.imaging import UnreadableImage, load_image, load_prepared, prepare
from desktop.core.inference.items import Item, Position, Sources, TileName, parse_tile_name, tile_name
from desktop.core.inference.model import Model
from desktop.core.inference.pipeline import classify
from desktop.core.inference.scan import SourceFile, scan_folder
from desktop.core.inference.slide import PatchGrid, item_offset
from desktop.core.records.session import Session

PATCH = 50
GRID = PatchGrid(PATCH, PATCH)
WINDOW = (48, 21)  # grid column and row of a 5 x 5 window of patient 9022 that is tissue throughout
ITEM_CLASSES = ("SourceFile", "Tile", "SlideTile", "PlacedTile")
MEMBERS = ("path", "relative", "size", "mtime", "problem", "source_name", "position", "content_hash", "read", "scale")


def _window_patches() -> dict[Position, Path]:
    """The window's patch files by their offset on the window (their names say where they lie on the slide)."""
    out = {}
    for path in (SAMPLES / "breast-idc-9022").glob("*.png"):
        x, y = (int(v) for v in re.search(r"_x(\d+)_y(\d+)_", path.name).groups())
        column, row = (x - 1) // PATCH - WINDOW[0], (y - 1) // PATCH - WINDOW[1]
        if 0 <= column < 5 and 0 <= row < 5:
            out[Position(column * PATCH, row * PATCH)] = path
    assert len(out) == 25
    return out


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    rgb = np.full((5 * PATCH, 5 * PATCH, 3), 255, np.uint8)
    for (x, y), path in _window_patches().items():
        patch = load_image(path)
        rgb[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
    return rgb


@pytest.fixture
def tissue(tmp_path, canvas) -> Path:
    folder = tmp_path / "tissue"
    folder.mkdir()
    write_image(folder / "window.png", canvas)
    return folder


def _slide_tiles(folder: Path) -> list:
    from desktop.core.inference.wsi import openslide_missing

    if openslide_missing():
        pytest.skip(openslide_missing())
    return expand_tissue_images(scan_folder(folder), GRID, model_mpp=4.0)


@pytest.fixture
def slide(tmp_path, canvas) -> Path:
    """The window as a whole slide at 1 µm per pixel, 4x the model's 4 µm: one model pixel is one canvas pixel."""
    pytest.importorskip("tifffile")
    folder = tmp_path / "slide"
    folder.mkdir()
    write_pyramid(folder / "window.tif", canvas, 4, 1.0)
    return folder


def test_every_kind_has_the_whole_interface(tmp_path, tissue, slide):
    blood = scan_folder(SAMPLES / "blood")[0]
    kinds = [blood, expand_tissue_images(scan_folder(tissue), GRID)[0], _slide_tiles(slide)[0]]
    assert [type(k).__name__ for k in kinds] == ["SourceFile", "Tile", "SlideTile"]
    assert set(MEMBERS) == {m for m in dir(Item) if not m.startswith("_")}
    for item in kinds:
        assert [m for m in MEMBERS if not hasattr(item, m)] == [], type(item).__name__


def test_a_file_reads_its_image_hashes_its_bytes_and_has_no_position(tmp_path):
    path = sorted((SAMPLES / "blood").glob("*.jpg"))[0]
    item = next(f for f in scan_folder(SAMPLES / "blood") if f.path == path)
    spec = Model(make_tiny_model(tmp_path / "m.onnx", size=(64, 64))).info.input
    np.testing.assert_array_equal(item.read(), load_image(path))
    np.testing.assert_array_equal(item.read(spec), load_prepared(path, spec))
    assert item.content_hash() == content_hash(path.read_bytes())
    assert item.position is None and item.scale() is None and item.source_name == item.relative == path.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1  # same size, one bit changed
    copy = tmp_path / path.name
    copy.write_bytes(bytes(data))
    assert SourceFile(copy, copy.name, item.size, item.mtime).content_hash() != item.content_hash()


def test_a_file_that_cannot_be_read_is_never_opened_and_says_why(tmp_path):
    path = tmp_path / "cell.jpg"
    shutil.copy(sorted((SAMPLES / "blood").glob("*.jpg"))[0], path)
    item = SourceFile(path, "cell.jpg", 1, 0.0, problem="not a regular file (a named pipe)")
    for ask in (item.content_hash, item.read):
        with pytest.raises(UnreadableImage, match="named pipe"):
            ask()


def test_a_patch_file_is_a_file_of_its_own_placed_by_its_name():
    item = next(f for f in scan_folder(SAMPLES / "breast-idc-9022") if f.relative.startswith("9022_idx5_x1001_y1251_"))
    assert item.position is None  # not cut from anything: the name's offset is the dataset's, not a read's
    assert item_offset(item) == (1001, 1251)
    assert item.read().shape == (PATCH, PATCH, 3)


def test_a_tissue_images_patches_read_its_pixels_and_share_its_hash(tissue, canvas, tmp_path):
    tiles = expand_tissue_images(scan_folder(tissue), GRID)
    patches = _window_patches()
    assert {t.position for t in tiles} == set(patches)  # every patch of the window, at its offset
    image_hash = content_hash((tissue / "window.png").read_bytes())
    spec = Model(make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (PATCH, PATCH), "idc-patch")).info.input
    sources = Sources()
    for tile in tiles:
        (x, y) = tile.position
        np.testing.assert_array_equal(tile.read(sources=sources), load_image(patches[tile.position]))
        np.testing.assert_array_equal(tile.read(spec, sources), prepare(canvas[y:y + PATCH, x:x + PATCH], spec))
        assert tile.content_hash(sources) == image_hash
        assert tile.scale() is None and tile.source_name == "window.png" and tile.problem == ""
    changed = canvas.copy()
    changed[0, 0] = (0, 0, 0)
    write_image(tissue / "window.png", changed)
    assert tiles[-1].content_hash() != image_hash  # one pixel anywhere changes every patch cut from it


def test_a_slide_tile_reads_through_the_helpers_and_is_known_by_the_file_and_its_scale(slide, canvas):
    from desktop.core.inference.wsi import scale_notes

    tiles = _slide_tiles(slide)
    assert {type(t).__name__ for t in tiles} == {"SlideTile"}
    assert {t.position for t in tiles} <= set(_window_patches()) and len(tiles) >= 20
    file_hash = hash_large_file(slide / "window.tif")
    for tile in tiles[:6]:
        (x, y) = tile.position
        pixels = tile.read().astype(int)
        assert pixels.shape == (PATCH, PATCH, 3)
        assert np.abs(pixels - canvas[y:y + PATCH, x:x + PATCH]).mean() < 6  # JPEG tiles, 4x finer, area-resized
        assert tile.content_hash() == f"{file_hash}@1um"
        assert tile.scale().mpp == pytest.approx(1.0, rel=1e-3)
    assert scale_notes(tiles).startswith("window.tif: 1 µm/px")


def test_a_tiles_position_round_trips_through_its_stored_name(tissue, slide):
    for tile in expand_tissue_images(scan_folder(tissue), GRID) + _slide_tiles(slide):
        assert parse_tile_name(tile.relative) == TileName(tile.source_name, tile.position)
        assert tile.relative == f"{tile.source_name}#x{tile.position.x}_y{tile.position.y}"
    # the form existing sessions key their cells by, for any source name
    assert tile_name("slide.svs", Position(150, 200)) == "slide.svs#x150_y200"
    for source, position in (("sub/a#b.png", Position(0, 0)), ("x#x1_y2.png", Position(29950, 12))):
        assert parse_tile_name(tile_name(source, position)) == (source, position)
    assert parse_tile_name("9022_idx5_x1001_y1251_class0.png") is None
    assert parse_tile_name("slide.png#x1_y2.png") is None


def test_stored_cells_carry_the_tiles_positions_and_a_changed_image_changes_them_all(tissue, tmp_path):
    model = Model(make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (PATCH, PATCH), "idc-patch"))
    session = Session.open(tissue, model, tmp_path / "data")
    session.classify()
    tiles = expand_tissue_images(scan_folder(tissue), GRID)
    cells = {c.file: c for c in session.cells()}
    assert {f: (c.x, c.y) for f, c in cells.items()} == {t.relative: tuple(t.position) for t in tiles}
    assert session.changes().any is False
    image = load_image(tissue / "window.png")
    image[0, 0] = (0, 0, 0)
    write_image(tissue / "window.png", image)
    assert set(session.changes().changed) == set(cells)
    session.close()


def test_a_run_reads_each_file_once_for_its_hash_and_its_pixels(tissue, tmp_path, monkeypatch):
    from desktop.core.inference import items as items_module

    for path in sorted((SAMPLES / "breast-idc-9022").glob("*.png"))[:20]:
        shutil.copy(path, tissue / path.name)
    reads: list[Path] = []
    real = items_module.read_bytes

    def counted(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(items_module, "read_bytes", counted)
    model = Model(make_tiny_model(tmp_path / "m.onnx", ("normal", "idc"), (PATCH, PATCH), "idc-patch"))
    todo = expand_tissue_images(scan_folder(tissue), GRID)
    calls = []
    assert classify(model, todo, calls.extend, batch_size=4, workers=2) == 45
    assert all(c.content_hash and not c.unreadable for c in calls)
    assert sorted(reads) == sorted({t.path for t in todo})  # 20 patch files and the tissue image, once each


# --- no module tells the kinds apart, nor reads a tile's name back but items.py -------------------------------

def _isinstance_on_items(source: str) -> list[int]:
    """Lines where isinstance (or type(...) is) names one of the item classes."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("isinstance", "issubclass") \
                and len(node.args) == 2:
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} | \
                {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
            if names & set(ITEM_CLASSES):
                lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Call) \
                and getattr(node.left.func, "id", "") == "type":
            names = {getattr(c, "id", getattr(c, "attr", "")) for c in node.comparators}
            if names & set(ITEM_CLASSES):
                lines.append(node.lineno)
    return lines


def test_the_isinstance_finder_finds_what_it_looks_for():
    assert _isinstance_on_items("if isinstance(item, SlideTile): pass") == [1]
    assert _isinstance_on_items("x = 1\nok = isinstance(i, (slide.Tile, int))") == [2]
    assert _isinstance_on_items("ok = type(i) is SourceFile") == [1]
    assert _isinstance_on_items("ok = isinstance(exc, PermissionError)") == []


def test_no_module_tells_the_item_kinds_apart_with_isinstance():
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted((ROOT / "desktop").rglob("*.py"))
             for line in _isinstance_on_items(p.read_text(encoding="utf-8"))]
    assert found == []


def test_only_items_py_reads_a_tile_name_back():
    parsing = re.compile(r"#x\(|split\(\"#\"\)|partition\(\"#\"\)|\"#\" (not )?in ")
    found = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "desktop").rglob("*.py"))
             if parsing.search(p.read_text(encoding="utf-8"))]
    assert found == ["desktop/core/inference/items.py"]
