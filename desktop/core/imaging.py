"""Decode image bytes and fit them to a model's input: the one preprocessing path.

The trainer imports `prepare` too, so training and inference can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# A 20000x20000 RGB image is 1.2 GB decoded: refuse before decoding anything that large.
MAX_PIXELS = 60_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

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


class UnreadableImage(Exception):
    """An image file that cannot be used; the message says why in plain words."""


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its pixels: size, interpolation, and what to do with small images."""

    height: int
    width: int
    resize: str = "area"
    small_input: str = "resize"


def sniff_format(head: bytes) -> str | None:
    """Image format from the first bytes of a file, or None when it is not an image we read."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height from a PNG header without decoding (guards against huge images)."""
    if fmt == "png" and len(data) >= 24:
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        return width, height
    return None


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to an RGB uint8 array (H, W, 3).

    Grayscale, RGBA, palette and 16-bit images are converted; anything else raises
    `UnreadableImage` with the reason.
    """
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise UnreadableImage("not an image (unknown file contents)")
    size = _header_size(data, fmt)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise UnreadableImage(f"image too large ({size[0]}x{size[1]} pixels)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise UnreadableImage(f"damaged or truncated {fmt.upper()} file")
    if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise UnreadableImage("truncated JPEG file (end marker missing)")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise UnreadableImage(f"image too large ({image.shape[1]}x{image.shape[0]} pixels)")
    return to_rgb8(image)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (BGR/BGRA/gray, 8 or 16 bit) to RGB uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 4:
        # Transparent pixels become white, the colour of an empty slide.
        bgr = image[:, :, :3].astype(np.float32)
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        blended = bgr * alpha + 255.0 * (1.0 - alpha)
        return cv2.cvtColor(blended.round().astype(np.uint8), cv2.COLOR_BGR2RGB)
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
    """Read a file's bytes; OS errors become `UnreadableImage` with a plain reason."""
    try:
        return Path(path).read_bytes()
    except PermissionError as exc:
        raise UnreadableImage("no permission to read the file") from exc
    except FileNotFoundError as exc:
        raise UnreadableImage("file disappeared before it could be read") from exc
    except OSError as exc:
        raise UnreadableImage(f"could not read the file ({exc.strerror or exc})") from exc


def load_image(path: Path) -> np.ndarray:
    """Read and decode one file to RGB uint8 (unicode paths work: bytes go through numpy)."""
    return decode_image(read_bytes(path))


def load_prepared(path: Path, spec: InputSpec) -> np.ndarray:
    """Read, decode and fit one file to the model input."""
    return prepare(load_image(path), spec)
