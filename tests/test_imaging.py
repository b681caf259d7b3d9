"""Decoding every kind of file a technician's folder can hold, and fitting it to a model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import random_rgb, write_image

from desktop.core.inference.imaging import InputSpec, UnreadableImage, decode_image, load_image, prepare


def test_zero_byte_file_is_reported_not_fatal(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty"):
        load_image(path)


def test_text_file_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(UnreadableImage, match="not an image"):
        load_image(path)


def test_truncated_jpeg_is_reported(tmp_path):
    full = write_image(tmp_path / "full.jpg", random_rgb(1, (120, 120)))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:600])
    with pytest.raises(UnreadableImage, match="truncated|damaged"):
        load_image(cut)


def test_huge_png_header_is_refused_before_decoding(tmp_path):
    # a valid PNG signature and IHDR claiming 20000 x 20000 pixels
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    path = tmp_path / "huge.png"
    path.write_bytes(header + b"\x00" * 64)
    with pytest.raises(UnreadableImage, match="too large"):
        load_image(path)


def test_rgba_png_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGR order
    rgba[..., 3] = 0  # fully transparent
    ok, data = cv2.imencode(".png", rgba)
    rgb = decode_image(data.tobytes())
    assert rgb.shape == (10, 10, 3)
    assert (rgb == 255).all()


def test_16bit_tiff_and_grayscale_become_rgb8(tmp_path):
    grey16 = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    ok, data = cv2.imencode(".tiff", grey16)
    rgb = decode_image(data.tobytes())
    assert rgb.dtype == np.uint8 and rgb.shape == (10, 10, 3)
    assert rgb[9, 9, 0] == (99 * 600) >> 8
    ok, data = cv2.imencode(".png", np.full((5, 7), 77, np.uint8))
    assert decode_image(data.tobytes()).shape == (5, 7, 3)


def test_unicode_path_reads(tmp_path):
    folder = tmp_path / "Blutausstrich_µ_血液"
    folder.mkdir()
    path = write_image(folder / "Zelle_ä_细胞.png", random_rgb(3))
    assert load_image(path).shape == (40, 40, 3)


def test_colour_order_is_rgb(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = write_image(tmp_path / "red.png", rgb)
    assert load_image(path)[0, 0].tolist() == [200, 0, 0]


def test_small_patch_is_padded_with_white_not_stretched():
    patch = np.zeros((30, 50, 3), np.uint8)
    out = prepare(patch, InputSpec(50, 50, "area", "pad-white"))
    assert out.shape == (50, 50, 3)
    assert (out[:30] == 0).all() and (out[30:] == 255).all()


def test_resize_uses_the_models_interpolation():
    img = random_rgb(5, (360, 363))
    out = prepare(img, InputSpec(96, 96, "area", "resize"))
    assert np.array_equal(out, cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("progressive", [False, True])
def test_large_jpeg_decodes_reduced_but_never_below_the_model_input(tmp_path, progressive):
    smooth = cv2.GaussianBlur(random_rgb(5, (363, 360)), (0, 0), 6)  # a camera image is smooth, noise is not
    params = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), params)
    data = encoded.tobytes()
    from desktop.core.inference.imaging import _jpeg_size, decode_prepared

    assert _jpeg_size(data) == (360, 363)
    assert decode_image(data, at_least=(96, 96)).shape == (182, 180, 3)  # 1/2, not 1/4 (90 < 96)
    assert decode_image(data, at_least=(40, 40)).shape == (46, 45, 3)  # 1/8
    spec = InputSpec(96, 96, "area", "resize")
    reduced = decode_prepared(data, spec).astype(int)
    full = prepare(decode_image(data), spec).astype(int)
    assert np.abs(reduced - full).mean() < 1.5
    # A linear resize asks for the full decode: no reduction there.
    assert decode_image(data).shape == (363, 360, 3)
