"""ONNX Runtime inference: calibrated probabilities and embeddings for a batch of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from radvigil.errors import ModelError
from radvigil.model.preprocess import to_batch


class OnnxEngine:
    """One ORT session with explicit thread settings (never competing with torch's pool)."""

    def __init__(self, path: Path | bytes, threads: int = 2) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = path if isinstance(path, bytes) else str(path)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except (ort.capi.onnxruntime_pybind11_state.Fail, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load ONNX model: {exc}") from exc
        shape = self.session.get_inputs()[0].shape
        self.input_name = self.session.get_inputs()[0].name
        self.size = int(shape[-1])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (N x C) and embeddings (N x D) for a preprocessed float32 batch."""
        probs, embedding = self.session.run(None, {self.input_name: batch})
        return probs, embedding

    def predict(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Preprocess uint8 grayscale images exactly as in training, then run."""
        return self.run(to_batch(images, self.size))
