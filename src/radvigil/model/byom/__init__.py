"""Bring your own model: import, wrap and explain ONNX graphs radvigil did not train."""
