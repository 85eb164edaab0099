"""Tiny ONNX classifiers built with onnx.helper, for the import checks (no training, no torch).

The graph: image -> (optional NHWC transpose) -> GlobalAveragePool -> Flatten ("features")
-> Gemm -> scores (logits, or softmaxed into probabilities). Weights favour the brighter
channel mean for class 1, so scores vary across real images.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


def tiny_classifier(
    *,
    channels: int = 3,
    size: int | None = 48,
    batch: int | str = "N",
    layout: str = "NCHW",
    input_name: str = "pixels",
    output_name: str = "scores",
    kind: str = "logits",
    classes: int = 2,
    nan: bool = False,
) -> onnx.ModelProto:
    """A valid tiny classifier; the keyword arguments make the variants the tests refuse."""
    h = size if size is not None else "H"
    dims = [batch, channels, h, h] if layout == "NCHW" else [batch, h, h, channels]
    weight = np.zeros((classes, channels), dtype=np.float32)
    weight[-1] = 4.0
    bias = np.zeros(classes, dtype=np.float32)
    bias[-1] = -2.0
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    nodes = []
    current = input_name
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["nchw"], perm=[0, 3, 1, 2]))
        current = "nchw"
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["features", "w", "b"], ["logits"], transB=1, name="head"),
    ]
    last = "logits"
    if nan:
        inits.append(numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan"))
        nodes.append(helper.make_node("Mul", [last, "nan"], ["nanned"]))
        last = "nanned"
    if kind == "probabilities":
        nodes.append(helper.make_node("Softmax", [last], [output_name], axis=1))
    else:
        nodes.append(helper.make_node("Identity", [last], [output_name]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def spec_dict(**overrides) -> dict:
    """A spec matching :func:`tiny_classifier`'s defaults (chest-pneumonia task)."""
    spec = {
        "input": {
            "name": "pixels",
            "size": [48, 48],
            "channels": 3,
            "scale": 255,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "layout": "NCHW",
        },
        "output": {"name": "scores", "kind": "logits"},
        "task": "chest-pneumonia",
        "classes": ["normal", "pneumonia"],
        "findings": ["pneumonia"],
        "embedding": {"node": "flatten"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec
