"""The input/output spec of an outside ONNX model, and its check against the graph.

A vendor's graph says nothing about how pixels must be prepared or what its outputs mean; the
spec (YAML) says it, and :func:`check_graph` refuses a spec the graph contradicts before any
image is scored: input and output names, ranks, element type, and every dimension that is
neither the (dynamic) batch nor pinned by the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from radvigil.errors import ConfigError, ModelError
from radvigil.task import Task, load_task
from radvigil.yaml_files import load_yaml_model


class InputDecl(BaseModel):
    """How the vendor's graph wants its pixels: ``((pixel / scale) - mean[c]) / std[c]``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    size: tuple[int, int] | None = Field(
        None, description="(H, W); may be left out only when the graph pins both"
    )
    channels: Literal[1, 3] = 1
    scale: float = Field(255.0, gt=0, description="pixels (0-255) are divided by this first")
    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @model_validator(mode="after")
    def _per_channel(self) -> InputDecl:
        for field in ("mean", "std"):
            values = getattr(self, field)
            if len(values) not in (1, self.channels):
                raise ValueError(f"{field} needs 1 or {self.channels} values, got {len(values)}")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        if self.size is not None and not all(16 <= s <= 2048 for s in self.size):
            raise ValueError("size must be between 16 and 2048 pixels on each side")
        return self

    def per_channel(self, values: list[float]) -> list[float]:
        return values * self.channels if len(values) == 1 else list(values)


class OutputDecl(BaseModel):
    """Which graph output holds the class scores, and whether they are logits or probabilities."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["logits", "probabilities"]


class EmbeddingDecl(BaseModel):
    """Where the model's own embedding is: a graph output, or an intermediate node/tensor."""

    model_config = ConfigDict(extra="forbid")

    output: str | None = None
    node: str | None = Field(None, description="node name (its first output) or tensor name")

    @model_validator(mode="after")
    def _one(self) -> EmbeddingDecl:
        if (self.output is None) == (self.node is None):
            raise ValueError("embedding needs exactly one of output or node")
        return self


class ModelSpec(BaseModel):
    """The whole spec: input, output, task (a shipped task name or an inline task), embedding."""

    model_config = ConfigDict(extra="forbid")

    input: InputDecl
    output: OutputDecl
    task: str | Task
    classes: list[str] = Field(min_length=2, description="the graph's output order")
    findings: list[str] = Field(min_length=1)
    embedding: EmbeddingDecl | None = None
    vendor_thresholds: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        unknown = [f for f in self.findings if f not in self.classes]
        if unknown:
            raise ValueError(f"findings {unknown} are not among classes {self.classes}")
        extra = [k for k in self.vendor_thresholds if k not in self.findings]
        if extra:
            raise ValueError(f"vendor_thresholds name {extra}, which are not findings")
        if any(not 0.0 < v < 1.0 for v in self.vendor_thresholds.values()):
            raise ValueError("vendor_thresholds must lie in (0, 1)")
        return self

    def resolved_task(self) -> Task:
        """The radvigil task, which must predict exactly the spec's classes and findings."""
        task = load_task(self.task) if isinstance(self.task, str) else self.task
        if task.classes != self.classes or sorted(task.findings) != sorted(self.findings):
            raise ConfigError(
                f"the spec's classes {self.classes} / findings {self.findings} do not match "
                f"task {task.name!r} ({task.classes} / {task.findings}); reorder the classes to "
                "the task's order only if the graph's outputs are in that order, or define the "
                "task inline"
            )
        return task


def load_spec(path: Path) -> ModelSpec:
    """The spec YAML at ``path`` (ConfigError naming the file and field when invalid)."""
    return load_yaml_model(path, ModelSpec, "model spec")


@dataclass(frozen=True)
class GraphCheck:
    """What the graph check established: the size to feed and the embedding tensor, if any."""

    height: int
    width: int
    opset: int
    embedding_tensor: str | None
    embedding_is_output: bool


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """Static dims as ints; dynamic (symbolic or unset) ones as None."""
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_graph(model: onnx.ModelProto, spec: ModelSpec) -> GraphCheck:
    """Refuse a spec the graph contradicts; say what to feed it.

    Raises:
        ModelError: a missing input/output/node, a wrong rank, element type or channel count,
            a fixed batch, or a dynamic height/width that the spec does not pin.
    """
    graph = model.graph
    initialisers = {i.name for i in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initialisers}
    if len(inputs) != 1:
        raise ModelError(f"the graph must have exactly one image input, it has {sorted(inputs)}")
    if spec.input.name not in inputs:
        raise ModelError(
            f"the spec's input {spec.input.name!r} is not in the graph (its input is "
            f"{next(iter(inputs))!r})"
        )
    value = inputs[spec.input.name]
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        raise ModelError(f"input {spec.input.name!r} is {kind}; only float32 inputs are served")
    dims = _dims(value)
    if len(dims) != 4:
        raise ModelError(f"input {spec.input.name!r} has rank {len(dims)}, expected 4 (N,C,H,W)")
    if dims[0] is not None:
        raise ModelError(
            f"input {spec.input.name!r} has a fixed batch of {dims[0]}; radvigil scores batches, "
            "so export the graph with a dynamic batch dimension"
        )
    channel_axis, h_axis, w_axis = (1, 2, 3) if spec.input.layout == "NCHW" else (3, 1, 2)
    channels = dims[channel_axis]
    if channels is not None and channels != spec.input.channels:
        raise ModelError(
            f"input {spec.input.name!r} takes {channels} channels ({spec.input.layout}), "
            f"the spec says {spec.input.channels}"
        )
    height, width = _size(dims[h_axis], dims[w_axis], spec)
    _check_output(graph, spec)
    tensor, is_output = _embedding(model, spec)
    return GraphCheck(height, width, default_opset(model), tensor, is_output)


def _size(h: int | None, w: int | None, spec: ModelSpec) -> tuple[int, int]:
    declared = spec.input.size
    if declared is None:
        if h is None or w is None:
            raise ModelError(
                "the graph's input height/width are dynamic and the spec does not pin them; "
                "give input.size: [H, W] (the size the model was validated at)"
            )
        return h, w
    for got, want, what in ((h, declared[0], "height"), (w, declared[1], "width")):
        if got is not None and got != want:
            raise ModelError(f"the graph's input {what} is {got}, the spec says {want}")
    return declared


def _check_output(graph: onnx.GraphProto, spec: ModelSpec) -> None:
    outputs = {o.name: o for o in graph.output}
    if spec.output.name not in outputs:
        raise ModelError(
            f"the spec's output {spec.output.name!r} is not in the graph (outputs: "
            f"{sorted(outputs)})"
        )
    dims = _dims(outputs[spec.output.name])
    if dims and len(dims) != 2:
        raise ModelError(f"output {spec.output.name!r} has rank {len(dims)}, expected 2 (N, C)")
    if len(dims) == 2 and dims[1] is not None and dims[1] != len(spec.classes):
        raise ModelError(
            f"output {spec.output.name!r} has {dims[1]} scores, the spec names "
            f"{len(spec.classes)} classes"
        )


def _embedding(model: onnx.ModelProto, spec: ModelSpec) -> tuple[str | None, bool]:
    decl = spec.embedding
    if decl is None:
        return None, False
    graph = model.graph
    if decl.output is not None:
        if decl.output not in {o.name for o in graph.output}:
            raise ModelError(f"the spec's embedding output {decl.output!r} is not in the graph")
        return decl.output, True
    for node in graph.node:
        if node.name == decl.node and node.output:
            return node.output[0], False
    produced = {out for node in graph.node for out in node.output}
    if decl.node in produced:
        return decl.node, False
    names = [n.name for n in graph.node if n.name][-5:]
    raise ModelError(
        f"the spec's embedding node {decl.node!r} does not exist in the graph (no node or "
        f"tensor of that name; last nodes: {names})"
    )
