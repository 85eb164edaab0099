"""Wrap an outside ONNX graph into radvigil's served contract, in one graph.

radvigil serves every version the same way: input ``image`` (N x 1 x S x S float32, radvigil's
own preprocessing, :mod:`radvigil.model.preprocess`), outputs ``probabilities`` (calibrated) and
``embedding``. An imported graph gets that contract by composition with onnx, not by a second
code path: the spec's preprocessing (resize to H x W, scaling, mean/std, channels, layout) is
prepended as graph nodes, the output transform and the fitted temperature are appended, and the
embedding comes from the vendor's own tensor (pooled to N x D) or from the fixed extractor
branch. The engine, the evaluation, the DICOM path and the monitors then run it unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper, version_converter

from radvigil.errors import ModelError
from radvigil.model.byom.spec import GraphCheck, ModelSpec, default_opset
from radvigil.model.export import INPUT, OUTPUTS
from radvigil.model.preprocess import MEAN, STD

TEMPERATURE = "radvigil/temperature"
VENDOR = "vendor/"
EXTRACTOR = "extractor/"
PROBABILITY_FLOOR = 1e-12  # log of a probability: keep log(0) finite


def served_size(check: GraphCheck) -> int:
    """The square side radvigil resizes to: the vendor's size, or its larger side."""
    return max(check.height, check.width)


def affine(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``a, b`` with ``vendor_input = a * radvigil_input + b`` (both 1 x C x 1 x 1).

    radvigil feeds ``x = (g/255 - MEAN) / STD``, so ``g = 255 (x STD + MEAN)`` and the vendor's
    ``(g / scale - mean_c) / std_c`` is affine in ``x``.
    """
    mean = np.asarray(spec.input.per_channel(spec.input.mean), dtype=np.float64)
    std = np.asarray(spec.input.per_channel(spec.input.std), dtype=np.float64)
    k = 255.0 / spec.input.scale
    a = (STD * k) / std
    b = (MEAN * k - mean) / std
    shape = (1, spec.input.channels, 1, 1)
    return a.reshape(shape).astype(np.float32), b.reshape(shape).astype(np.float32)


def expose(model: onnx.ModelProto, spec: ModelSpec, check: GraphCheck) -> onnx.ModelProto:
    """A copy of the vendor graph whose outputs are the scores and (if any) the embedding."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    outputs = {o.name: o for o in model.graph.output}
    keep = [outputs[spec.output.name]]
    if check.embedding_tensor is not None:
        keep.append(
            outputs.get(check.embedding_tensor)
            or helper.make_tensor_value_info(check.embedding_tensor, TensorProto.FLOAT, None)
        )
    del exposed.graph.output[:]
    exposed.graph.output.extend(keep)
    return exposed


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _preprocess(spec: ModelSpec, check: GraphCheck, target: str) -> tuple[list, list]:
    """Nodes from ``image`` to the vendor's input tensor ``target``."""
    nodes, inits = [], []
    current = INPUT
    size = served_size(check)
    if (check.height, check.width) != (size, size):
        if check.opset < 11:
            raise ModelError(
                f"a non-square input needs opset 11 or later, the graph has {check.opset}"
            )
        scales = np.array([1.0, 1.0, check.height / size, check.width / size], dtype=np.float32)
        inits += [
            _const("radvigil/roi", np.zeros(0, dtype=np.float32)),
            _const("radvigil/scales", scales),
        ]
        nodes.append(
            helper.make_node(
                "Resize",
                [current, "radvigil/roi", "radvigil/scales"],
                ["radvigil/resized"],
                mode="linear",
                name="radvigil/resize",
            )
        )
        current = "radvigil/resized"
    a, b = affine(spec)
    inits += [_const("radvigil/scale", a), _const("radvigil/shift", b)]
    scaled = "radvigil/scaled" if spec.input.layout == "NHWC" else target
    nodes += [
        helper.make_node("Mul", [current, "radvigil/scale"], ["radvigil/mul"], name="radvigil/mul"),
        helper.make_node("Add", ["radvigil/mul", "radvigil/shift"], [scaled], name="radvigil/add"),
    ]
    if spec.input.layout == "NHWC":
        nodes.append(
            helper.make_node(
                "Transpose", [scaled], [target], perm=[0, 2, 3, 1], name="radvigil/nhwc"
            )
        )
    return nodes, inits


def _postprocess(spec: ModelSpec, scores: str, temperature: float) -> tuple[list, list]:
    """Nodes from the vendor's scores to ``probabilities = softmax(log-scores / T)``."""
    inits = [_const(TEMPERATURE, np.array(temperature, dtype=np.float32))]
    nodes = []
    logits = scores
    if spec.output.kind == "probabilities":
        inits.append(_const("radvigil/floor", np.array(PROBABILITY_FLOOR, dtype=np.float32)))
        nodes += [
            helper.make_node("Max", [scores, "radvigil/floor"], ["radvigil/floored"]),
            helper.make_node("Log", ["radvigil/floored"], ["radvigil/log_scores"]),
        ]
        logits = "radvigil/log_scores"
    nodes += [
        helper.make_node("Div", [logits, TEMPERATURE], ["radvigil/tempered"]),
        helper.make_node("Softmax", ["radvigil/tempered"], [OUTPUTS[0]], axis=1),
    ]
    return nodes, inits


def _pool(tensor: str, rank: int) -> list:
    """Nodes reducing the embedding tensor to N x D (global average over spatial axes)."""
    if rank == 2:
        return [helper.make_node("Identity", [tensor], [OUTPUTS[1]])]
    if rank == 4:
        return [
            helper.make_node("GlobalAveragePool", [tensor], ["radvigil/pooled"]),
            helper.make_node("Flatten", ["radvigil/pooled"], [OUTPUTS[1]], axis=1),
        ]
    raise ModelError(f"the embedding tensor has rank {rank}; radvigil takes N x D or N x C x H x W")


def _at_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    if default_opset(model) == opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:  # the converter raises plain RuntimeErrors/ValueErrors per adapter
        raise ModelError(
            f"the feature extractor cannot be converted to the graph's opset {opset}: {exc}"
        ) from exc


def wrap(
    vendor: onnx.ModelProto,
    spec: ModelSpec,
    check: GraphCheck,
    *,
    temperature: float,
    embedding_rank: int | None,
    extractor: onnx.ModelProto | None,
) -> onnx.ModelProto:
    """The served graph: radvigil's input -> vendor graph -> calibrated probabilities, embedding.

    ``embedding_rank`` is the rank of the vendor's embedding tensor (None: use ``extractor``,
    a graph from ``image`` (N x 1 x S x S) to one N x D output).
    """
    inner = compose.add_prefix(expose(vendor, spec, check), VENDOR)
    pre_nodes, pre_inits = _preprocess(spec, check, VENDOR + spec.input.name)
    post_nodes, post_inits = _postprocess(spec, VENDOR + spec.output.name, temperature)
    nodes = [*pre_nodes, *inner.graph.node]
    inits = [*pre_inits, *inner.graph.initializer, *post_inits]
    value_info = list(inner.graph.value_info)
    opsets = {o.domain: o.version for o in inner.opset_import}
    if check.embedding_tensor is not None and embedding_rank is not None:
        post_nodes += _pool(VENDOR + check.embedding_tensor, embedding_rank)
        width = None
    elif extractor is not None:
        branch = compose.add_prefix(_at_opset(extractor, check.opset), EXTRACTOR)
        source, out = branch.graph.input[0].name, branch.graph.output[0].name
        for node in branch.graph.node:
            node.input[:] = [INPUT if name == source else name for name in node.input]
        nodes += branch.graph.node
        inits += branch.graph.initializer
        value_info += branch.graph.value_info
        for o in branch.opset_import:
            opsets.setdefault(o.domain, o.version)
        post_nodes.append(helper.make_node("Identity", [out], [OUTPUTS[1]]))
        width = branch.graph.output[0].type.tensor_type.shape.dim[1].dim_value or None
    else:
        raise ModelError("the model has no embedding and no feature extractor was given")
    size = served_size(check)
    graph = helper.make_graph(
        [*nodes, *post_nodes],
        "radvigil-imported",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 1, size, size])],
        [
            helper.make_tensor_value_info(
                OUTPUTS[0], TensorProto.FLOAT, ["batch", len(spec.classes)]
            ),
            helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["batch", width]),
        ],
        initializer=inits,
        value_info=value_info,
    )
    wrapped = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        ir_version=max(vendor.ir_version, extractor.ir_version if extractor else 0),
        producer_name="radvigil-import",
    )
    wrapped.functions.extend(vendor.functions)
    try:
        onnx.checker.check_model(wrapped)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the wrapped graph is not valid ONNX: {exc}") from exc
    return wrapped


def set_temperature(model: onnx.ModelProto, temperature: float) -> onnx.ModelProto:
    """A copy of a wrapped graph with another temperature (site calibration, import fitting)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name == TEMPERATURE:
            init.CopyFrom(_const(TEMPERATURE, np.array(temperature, dtype=np.float32)))
            return out
    raise ModelError("this graph has no radvigil temperature (it was not made by an import)")
