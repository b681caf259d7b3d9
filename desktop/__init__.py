"""SlideTally: CNN pre-classification of microscope images for laboratory review."""

# Set before any onnxruntime or cv2 import (everything imports this package first):
# ONNX Runtime's telemetry would otherwise write a device id under ~/.cache and call home,
# and OpenCV checks its own pixel limit on every decode only when told before it loads.
import os as _os

_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
_os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = "60000000"  # = imaging.MAX_PIXELS (checked by a test)
_os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")  # a damaged file's reason goes on its row, not to the terminal

from pathlib import Path


def _version() -> str:
    """pyproject.toml is the one place the version is written: read it in a checkout, else the installed metadata."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    from importlib.metadata import version

    return version("slidetally")


def __getattr__(name: str) -> str:
    """`desktop.__version__`, read when first asked for (the window's first paint does not wait for tomllib)."""
    if name == "__version__":
        globals()["__version__"] = version = _version()
        return version
    raise AttributeError(f"module 'desktop' has no attribute {name!r}")
