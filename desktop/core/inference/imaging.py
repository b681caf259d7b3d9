"""Decode image bytes and fit them to a model's input: the one preprocessing path.

The trainer imports `prepare` too, so training and inference can never drift apart.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from desktop.core.inference.files import UnreadableFile, megabytes, read_file

# Refuse before decoding: a small file can claim any size (a 632-byte JPEG decoded to 5 GB).
# MAX_PIXELS is also OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS, set in desktop/__init__),
# which its decoders check against their own header parse before they allocate anything.
MAX_PIXELS = 60_000_000
# What one decoded image may take: 60 M 8-bit RGB pixels (180 MB) fit, a 16-bit RGBA image
# of that size (480 MB) does not.
MAX_DECODED_BYTES = 256 * 2**20
# Images above this are decoded one at a time, so parallel decoders never hold several.
LARGE_DECODE_BYTES = 24 * 2**20
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
READ_FORMATS = "JPEG, PNG, TIFF and BMP"

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}
SMALL_INPUT_RULES = ("resize", "pad-white")

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
)
# Formats we recognise but do not decode: every decoder is attack surface, and none of these
# comes out of a microscope camera or analyser (WebP's decoder had a remote-code bug in 2023).
_OTHER_MAGIC = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"II+\x00", "BigTIFF"), (b"MM\x00+", "BigTIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"v/1\x01", "OpenEXR"), (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"), (b"8BPS", "Photoshop"),
    (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"), (b"\x59\xa6\x6a\x95", "Sun raster"), (b"qoif", "QOI"),
)
_LARGE_DECODES = threading.Lock()


class UnreadableImage(UnreadableFile):
    """An image file that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its pixels: size, interpolation, and what to do with small images."""

    height: int
    width: int
    resize: str = "area"
    small_input: str = "resize"


@dataclass(frozen=True)
class Header:
    """What an image's header promises: its size and how many bytes a full decode takes."""

    width: int
    height: int
    channels: int  # as OpenCV will return them
    sample_bytes: int  # 1 for 8-bit, 2 for 16-bit, ...

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        return self.pixels * self.channels * self.sample_bytes


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or None when it is not an image we read."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def other_format(head: bytes) -> str | None:
    """The name of an image (or document) format we recognise but do not read."""
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
        return "HEIF/AVIF"
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"1234567f" and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return "PNM"
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MARKER = re.compile(rb"\xff+([\x00-\xfe])")  # fill bytes, then the marker code
_JPEG_MAX_MARKERS = 10_000  # a real file has a few dozen before its frame header
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def _u16(data: bytes, pos: int, order: str = "big") -> int:
    return int.from_bytes(data[pos:pos + 2], order)


def _u32(data: bytes, pos: int, order: str = "big") -> int:
    return int.from_bytes(data[pos:pos + 4], order)


def _jpeg_header(data: bytes) -> Header | None:
    """The frame header that libjpeg will use, found the way libjpeg finds it: bytes between
    markers are skipped (libjpeg only warns about them), segments are skipped by their length,
    and the first start-of-frame counts."""
    pos = 2
    for _ in range(_JPEG_MAX_MARKERS):
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            return None
        marker, pos = found.group(1)[0], found.end()
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8:  # no length follows
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        if marker in _JPEG_SOF:
            if pos + 8 > len(data):
                return None
            precision, height, width, components = data[pos + 2], _u16(data, pos + 3), _u16(data, pos + 5), data[pos + 7]
            return Header(width, height, 1 if components == 1 else 3, 2 if precision > 8 else 1)
        pos += _u16(data, pos)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a JPEG's start-of-frame marker, without decoding."""
    header = _jpeg_header(data)
    return (header.width, header.height) if header else None


def _png_header(data: bytes) -> Header | None:
    if len(data) < 26 or data[12:16] != b"IHDR":
        return None
    depth, colour = data[24], data[25]
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour, 4)
    return Header(_u32(data, 16), _u32(data, 20), channels, 2 if depth == 16 else 1)


def _tiff_header(data: bytes) -> Header | None:
    """Size, samples and bits from the first directory (the one libtiff and OpenCV decode). A tag
    given twice counts with its largest value: readers disagree on which copy wins (libtiff takes
    the first), and the size checked before decoding must never be the smaller one."""
    order = "little" if data[:2] == b"II" else "big"
    ifd = _u32(data, 4, order)
    if ifd < 8 or ifd + 2 > len(data):
        return None
    count = _u16(data, ifd, order)
    tags: dict[int, int] = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(data):
            return None
        tag, kind, n = _u16(data, entry, order), _u16(data, entry + 2, order), _u32(data, entry + 4, order)
        if kind == 3:  # SHORT: the first value is inline when the values fit in 4 bytes
            at = entry + 8 if n <= 2 else _u32(data, entry + 8, order)
            tags[tag] = max(tags.get(tag, 0), _u16(data, at, order) if at + 2 <= len(data) else 0)
        elif kind == 4:  # LONG
            at = entry + 8 if n <= 1 else _u32(data, entry + 8, order)
            tags[tag] = max(tags.get(tag, 0), _u32(data, at, order) if at + 4 <= len(data) else 0)
    if 256 not in tags or 257 not in tags:
        return None
    samples = max(1, tags.get(277, 1))
    bits = max(1, tags.get(258, 1))
    return Header(tags[256], tags[257], min(samples, 4), max(1, (bits + 7) // 8))


def _bmp_header(data: bytes) -> Header | None:
    if len(data) < 26:
        return None
    if _u32(data, 14, "little") == 12:  # OS/2 bitmap: 16-bit sizes
        return Header(_u16(data, 18, "little"), _u16(data, 20, "little"), 3, 1)
    if len(data) < 30:
        return None
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = abs(int.from_bytes(data[22:26], "little", signed=True))  # negative: stored top-down
    return Header(width, height, 4 if _u16(data, 28, "little") == 32 else 3, 1)


_HEADERS = {"jpeg": _jpeg_header, "png": _png_header, "tiff": _tiff_header, "bmp": _bmp_header}


def image_header(data: bytes) -> Header | None:
    """The size an image's header promises, read without decoding, or None when unreadable."""
    fmt = sniff_format(data[:16])
    return _HEADERS[fmt](data) if fmt else None


def _check_header(data: bytes, fmt: str) -> Header:
    """Refuse, before any decoder runs, an image that is too large or whose size cannot be read."""
    header = _HEADERS[fmt](data)
    if header is None or header.width <= 0 or header.height <= 0:
        raise UnreadableImage(f"damaged {fmt.upper()} file (its image size cannot be read)")
    if header.pixels > MAX_PIXELS:
        raise UnreadableImage(f"image too large ({header.width}x{header.height} pixels; "
                              f"the limit is {MAX_PIXELS // 1_000_000} million)")
    if header.decoded_bytes > MAX_DECODED_BYTES:
        raise UnreadableImage(f"image too large ({header.width}x{header.height} pixels, {8 * header.sample_bytes}-bit, "
                              f"{header.channels} channels: {megabytes(header.decoded_bytes)} decoded; "
                              f"the limit is {megabytes(MAX_DECODED_BYTES)})")
    return header


def _reduced_flag(size: tuple[int, int] | None, at_least: tuple[int, int] | None) -> int | None:
    """The largest JPEG decode-time reduction that still leaves `at_least` (w, h) pixels.

    libjpeg scales in the DCT domain, an area average like INTER_AREA, so decoding a
    360-px cell at half size for a 96-px model costs ~40% less and, measured on 200
    analyser originals, gave the same calls as the full decode (see the model card)."""
    if size is None or at_least is None:
        return None
    for factor, flag in _REDUCED:
        if size[0] // factor >= at_least[0] and size[1] // factor >= at_least[1]:
            return flag
    return None


def _imdecode(buffer: np.ndarray, flag: int, fmt: str) -> np.ndarray | None:
    try:
        return cv2.imdecode(buffer, flag)
    except cv2.error as exc:  # OpenCV's own size limit, or a decoder's assertion
        if "CV_IO_MAX_IMAGE" in str(exc) or "validateInputImageSize" in str(exc):
            raise UnreadableImage(f"image too large (over {MAX_PIXELS // 1_000_000} million pixels)") from exc
        raise UnreadableImage(f"damaged or truncated {fmt.upper()} file") from exc


def decode_image(data: bytes, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """Decode encoded image bytes to an RGB uint8 array (H, W, 3).

    Grayscale, RGBA, palette and 16-bit images are converted; anything else raises
    `UnreadableImage` with the reason. With `at_least` (width, height), a large JPEG may
    be decoded at 1/2, 1/4 or 1/8 size, never smaller than that.
    """
    return _decode(data, at_least, None)


def _decode(data: bytes, at_least: tuple[int, int] | None, spec: InputSpec | None) -> np.ndarray:
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt is None:
        other = other_format(data[:16])
        if other:
            raise UnreadableImage(f"unsupported format: {other} (SlideTally reads {READ_FORMATS})")
        raise UnreadableImage("not an image (unknown file contents)")
    header = _check_header(data, fmt)
    reduced = _reduced_flag((header.width, header.height), at_least) if fmt == "jpeg" else None
    # A large image holds the one large-decode slot until it is fitted to the model input,
    # so parallel decoders never hold two of them (or their conversions) at once.
    with _LARGE_DECODES if header.decoded_bytes > LARGE_DECODE_BYTES else contextlib.nullcontext():
        image = _imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED if reduced is None else reduced, fmt)
        if image is None or image.size == 0:
            raise UnreadableImage(f"damaged or truncated {fmt.upper()} file")
        if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise UnreadableImage("truncated JPEG file (end marker missing)")
        if image.shape[0] * image.shape[1] > MAX_PIXELS:
            raise UnreadableImage(f"image too large ({image.shape[1]}x{image.shape[0]} pixels)")
        rgb = to_rgb8(image)
        del image
        return rgb if spec is None else prepare(rgb, spec)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (BGR/BGRA/gray, 8 or 16 bit) to RGB uint8.

    Works in place or in slices where it can: a large image is never held twice over in floats."""
    if image.dtype == np.uint16:
        if image.flags.writeable:
            np.right_shift(image, 8, out=image)
            image = image.astype(np.uint8)
        else:
            image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 4:
        # Transparent pixels become white, the colour of an empty slide: rgb*a + 255*(1-a),
        # rounded, in integers and a slice of rows at a time.
        out = np.empty((*image.shape[:2], 3), np.uint8)
        for top in range(0, image.shape[0], 256):
            rows = image[top:top + 256]
            alpha = rows[:, :, 3:4].astype(np.uint32)
            blended = (rows[:, :, 2::-1].astype(np.uint32) * alpha + 255 * (255 - alpha) + 127) // 255
            out[top:top + 256] = blended
        return out
    if channels == 3 and image.flags.c_contiguous and image.flags.writeable:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: the decoded array is ours
    return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)


def prepare(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Fit an RGB uint8 image to the model input (spec.height, spec.width, 3)."""
    height, width = rgb.shape[:2]
    if (height, width) == (spec.height, spec.width):
        return np.ascontiguousarray(rgb)
    if spec.small_input == "pad-white" and height <= spec.height and width <= spec.width:
        # Edge patches of a slide are cut short at the right/bottom: keep their scale
        # and fill the missing part with background instead of stretching them.
        canvas = np.full((spec.height, spec.width, 3), 255, dtype=np.uint8)
        canvas[:height, :width] = rgb
        return canvas
    interpolation = INTERPOLATIONS[spec.resize]
    return cv2.resize(rgb, (spec.width, spec.height), interpolation=interpolation)


def read_bytes(path: Path) -> bytes:
    """Read a file's bytes safely (regular files only, never blocking, size-capped); anything
    else becomes `UnreadableImage` with a plain reason."""
    try:
        return read_file(path)
    except UnreadableFile as exc:
        raise UnreadableImage(str(exc)) from exc


def load_image(path: Path) -> np.ndarray:
    """Read and decode one file to RGB uint8 (unicode paths work: bytes go through numpy)."""
    return decode_image(read_bytes(path))


def decode_prepared(data: bytes, spec: InputSpec) -> np.ndarray:
    """Decode bytes and fit them to the model input: the app's and the trainer's one path.

    Images shrunk with INTER_AREA may be decoded at a reduced size first (JPEG only)."""
    at_least = (spec.width, spec.height) if spec.resize == "area" else None
    return _decode(data, at_least, spec)


def load_prepared(path: Path, spec: InputSpec) -> np.ndarray:
    """Read, decode and fit one file to the model input."""
    return decode_prepared(read_bytes(path), spec)
