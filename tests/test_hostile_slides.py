"""Slides that cannot take the app down (issue 39): OpenSlide runs in helper processes under a time limit
and a memory cap, claims are checked before any allocation, a damaged slide is one row and never stops a
folder, only regular files reach OpenSlide, and a tile's identity includes the scale it was read at. Every
hostile file is made here, as small as the attack's."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, make_tiny_model
from slides import write_pyramid

tifffile = pytest.importorskip("tifffile")
pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs and rlimits are POSIX")


def _idc_model(tmp_path: Path) -> Path:
    return make_tiny_model(tmp_path / "idc.onnx", ("normal", "idc"), (50, 50), "idc-patch")


def _patch_folder(root: Path, n: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for path in sorted((SAMPLES / "breast-idc-9022").glob("*.png"))[:n]:
        shutil.copy(path, root / path.name)
    return root


def _slide(path: Path) -> Path:
    canvas = np.full((200, 300, 3), 246, np.uint8)
    canvas[50:150, 50:250] = (200, 110, 170)
    return write_pyramid(path, canvas, 4, 1.0)


def _poke(path: Path, tag: str, value: int, page: int = 0) -> None:
    """Make one tag of a page a LONG8 holding `value`, in place (the file's size does not change): a BigTIFF's
    IFD entry is tag(2) type(2) count(8) value(8), the value inline."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        offset = tif.pages[page].tags[tag].valueoffset
    with open(path, "r+b") as handle:
        handle.seek(offset - 10)
        handle.write(struct.pack("<H", 16))  # LONG8
        handle.seek(offset)
        handle.write(struct.pack("<Q", value))


def _classify(folder: Path, model: Path, data: Path, *extra: str, timeout: int = 120):
    return subprocess.run([sys.executable, "-m", "desktop.cli", "classify", str(folder), "--model", str(model),
                           "--data-dir", str(data), "--force", *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_a_fifo_named_like_a_slide_never_hangs_and_the_folder_classifies(tmp_path):
    folder = _patch_folder(tmp_path / "f")
    os.mkfifo(folder / "slide.tif")
    out = _classify(folder, _idc_model(tmp_path), tmp_path / "data", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "not a regular file" in out.stdout + out.stderr


def test_a_fifo_given_as_the_slide_itself_is_refused_at_once(tmp_path):
    fifo = tmp_path / "slide.tif"
    os.mkfifo(fifo)
    out = _classify(fifo, _idc_model(tmp_path), tmp_path / "data", timeout=60)
    assert out.returncode in (1, 2) and "Traceback" not in out.stderr


@pytest.mark.parametrize("claim", ["width", "tile"])
def test_a_slide_claiming_what_no_scanner_makes_is_one_row_and_the_folder_classifies(tmp_path, claim):
    folder = _patch_folder(tmp_path / "f")
    slide = _slide(folder / "huge.tif")
    if claim == "width":
        _poke(slide, "ImageWidth", 1_000_000)
        _poke(slide, "ImageLength", 1_000_000)
    else:  # level-0 tiles that claim 2^20 x 2^20 pixels each (a 4 TiB RGBA allocation)
        _poke(slide, "TileWidth", 2**20)
        _poke(slide, "TileLength", 2**20)
    out = _classify(folder, _idc_model(tmp_path), tmp_path / "data", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "unreadable" in out.stdout.lower() or "1 unreadable" in out.stdout or "could not be read" in out.stdout


def test_damaged_tiles_stay_local_and_a_signed_sessions_report_survives_them(tmp_path):
    folder = _patch_folder(tmp_path / "f")
    model, data = _idc_model(tmp_path), tmp_path / "data"
    out = _classify(folder, model, data)
    assert out.returncode == 0, out.stderr
    from desktop.core.records.session import Session

    s = Session.open(folder, model, data)
    s.set_identity("S-1", "", "Ana")
    s.confirm([c.file for c in s.cells() if c.needs_review], "Ana")
    s.sign_off("Ana")
    s.close()
    slide = _slide(folder / "late.tif")
    with tifffile.TiffFile(slide) as tif:
        offsets, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    with open(slide, "r+b") as handle:
        for offset, count in zip(offsets, counts):
            handle.seek(offset)
            handle.write(os.urandom(count))
    report = subprocess.run([sys.executable, "-m", "desktop.cli", "report", str(folder), "--model", str(model),
                             "--data-dir", str(data)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert report.returncode == 0, report.stderr
    again = _classify(_patch_folder(tmp_path / "g"), model, tmp_path / "data2")
    assert again.returncode == 0
    shutil.copy(slide, tmp_path / "g" / "late.tif")
    third = _classify(tmp_path / "g", model, tmp_path / "data2")
    assert third.returncode == 0, third.stderr
    assert "Traceback" not in third.stderr


def test_a_hanging_reader_is_stopped_and_the_next_request_gets_a_fresh_helper(tmp_path):
    from desktop.core.inference.slide_process import SlideError, SlidePool

    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    plain = _slide(tmp_path / "plain.tif")
    pool = SlidePool(1)
    try:
        with pytest.raises(SlideError, match="did not answer within 3 s"):
            pool.ask(("detect", str(fifo), None), 3)  # OpenSlide blocks on a FIFO for ever: its helper is killed
        assert pool.ask(("detect", str(plain), None), 30) == "generic-tiff"  # a fresh helper answers
    finally:
        pool.close()


def test_the_scale_is_part_of_a_tiles_identity(tmp_path):
    from desktop.core.inference.model import Model
    from desktop.core.records.session import Session

    folder = tmp_path / "s"
    folder.mkdir()
    canvas = np.full((200, 300, 3), 246, np.uint8)
    canvas[20:180, 20:280] = (200, 110, 170)
    write_pyramid(folder / "no-scale.tif", canvas, 4, None)
    model, data = Model(_idc_model(tmp_path)), tmp_path / "data"
    s = Session.open(folder, model, data, slide_mpp=1.6)
    s.classify()
    first = {c.file: c.x for c in s.cells() if not c.unreadable}
    s.close()
    s = Session.open(folder, model, data, slide_mpp=1.0)
    result = s.classify()
    cells = [c for c in s.cells() if not c.unreadable and not c.missing]
    note = s.record().slide_scale
    s.close()
    assert result.classified > 0  # every tile read at the new scale was classified again
    kept = [c.file for c in cells if c.file in first]
    assert kept and set(kept) <= set(result.changes.changed)  # a tile at the same place, another scale: changed
    assert "1 µm/px" in note and "1.6" not in note
