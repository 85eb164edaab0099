"""Export a trained classifier to ONNX (calibrated probabilities + embedding), check parity,
and optionally quantise it to static int8 QDQ.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from torch import nn

from radvigil.errors import ModelError
from radvigil.model.network import Classifier

INPUT = "image"
OUTPUTS = ("probabilities", "embedding")
PARITY_TOLERANCE = 1e-4
log = logging.getLogger(__name__)


class _Calibrated(nn.Module):
    """What the ONNX graph computes: softmax(logits / T) and the penultimate embedding."""

    def __init__(self, model: Classifier, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.model(x)
        return torch.softmax(logits / self.temperature, dim=1), embedding


def export_onnx(model: Classifier, temperature: float, size: int, path: Path) -> Path:
    """Write a batch-dynamic ONNX graph with inputs ``image`` (N x 1 x size x size)."""
    plain = model.cpu().to(memory_format=torch.contiguous_format).eval()  # see channels_last
    wrapper = _Calibrated(plain, temperature).eval()
    example = torch.zeros(2, 1, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_shapes={"x": {0: batch}},
            optimize=True,
            verbose=False,
        )
        if program is None:
            raise ModelError("the ONNX exporter returned no program")
        program.save(str(path))
    except Exception as exc:  # the exporter raises many unrelated types; all mean "cannot export"
        raise ModelError(f"ONNX export failed: {exc}") from exc
    onnx.checker.check_model(str(path))
    return path


def parity(model: Classifier, temperature: float, onnx_path: Path, batch: np.ndarray) -> float:
    """Max absolute difference between PyTorch and ONNX Runtime probabilities on ``batch``."""
    from radvigil.model.engine import OnnxEngine

    wrapper = _Calibrated(model.cpu().eval(), temperature).eval()
    with torch.inference_mode():
        expected = wrapper(torch.from_numpy(batch))[0].numpy()
    got, _ = OnnxEngine(onnx_path).run(batch)
    return float(np.abs(expected - got).max())


class _Reader(CalibrationDataReader):
    def __init__(self, batch: np.ndarray) -> None:
        self._items = iter([{INPUT: batch[i : i + 8]} for i in range(0, len(batch), 8)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


BACKBONE_OPS = (
    "Conv",
    "Add",
    "Mul",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Concat",
)


def quantize(onnx_path: Path, calibration: np.ndarray, out: Path) -> Path:
    """Static int8 QDQ quantisation calibrated on validation inputs.

    Static, not dynamic: dynamic int8 is several times slower for CNNs on CPU. Only the
    backbone's operators are quantised; the classifier, the temperature and the softmax stay in
    fp32, so the probabilities are not rounded to 1/255 steps (an int8 softmax moved them by up
    to 0.004 and broke their sum) and a low screening threshold keeps its meaning.
    """
    quantize_static(
        str(onnx_path),
        str(out),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=list(BACKBONE_OPS),
    )
    return out
