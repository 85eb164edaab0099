"""Model: networks, training, calibration, ONNX export and the inference engine."""
