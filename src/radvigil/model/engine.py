"""ONNX Runtime inference: calibrated probabilities and embeddings for a batch of images.

Thread rule (``RADVIGIL_ORT_THREADS=auto``, the default): on a machine with 2 usable cores or
fewer, ONNX Runtime gets **1** intra-op thread and Python (HTTP, decoding, the writer) keeps the
other core; with more cores, ORT gets all but one, at most 8 (past that a single CPU model gains
little and replicas scale better). Inter-op threads are always 1 (the graph runs sequentially)
and spinning is off, so idle ORT threads never burn the core Python needs. Measured on 2 cores:
1 thread served 1.6-2.6x more requests than 2 (issue #16).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from radvigil.errors import ModelError
from radvigil.model.preprocess import to_batch

MAX_AUTO_THREADS = 8
ThreadSetting = int | Literal["auto"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def ort_threads(setting: ThreadSetting = "auto", cores: int | None = None) -> int:
    """Intra-op threads for ``setting``: a positive number as given, or the rule above."""
    if setting != "auto":
        return max(1, int(setting))
    cores = usable_cores() if cores is None else cores
    return 1 if cores <= 2 else min(cores - 1, MAX_AUTO_THREADS)


def session_options(threads: ThreadSetting = "auto") -> ort.SessionOptions:
    """Session options of the thread rule: intra-op from the core count, inter-op 1, no spin."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = ort_threads(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxEngine:
    """One ORT session with explicit thread settings (never competing with torch's pool)."""

    def __init__(self, path: Path | bytes, threads: ThreadSetting = "auto") -> None:
        options = session_options(threads)
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
