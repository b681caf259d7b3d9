"""Training, evaluation, calibration and ONNX export of SlideTally's CNNs (TensorFlow)."""
