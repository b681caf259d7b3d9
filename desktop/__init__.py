"""SlideTally: CNN pre-classification of microscope images for laboratory review."""

__version__ = "0.1.0"

# Set before any onnxruntime or cv2 import (everything imports this package first):
# ONNX Runtime's telemetry would otherwise write a device id under ~/.cache and call home,
# and OpenCV checks its own pixel limit on every decode only when told before it loads.
import os as _os  # noqa: E402

_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
_os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = "60000000"  # = imaging.MAX_PIXELS (checked by a test)
_os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")  # a damaged file's reason goes on its row, not to the terminal
