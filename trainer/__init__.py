"""Training, evaluation, calibration and ONNX export of SlideTally's CNNs (TensorFlow)."""

import desktop  # noqa: F401 - disables ONNX Runtime's telemetry before the export checks load it
