"""Sanity checks of an outside graph on real images, before anything is registered.

The vendor graph is run on its own terms (the spec's preprocessing done in numpy, straight from
the 8-bit pixels), so a wrong spec shows up as wrong shapes, non-finite values or "probabilities"
that are not probabilities, each refused with a message that says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from radvigil.errors import ModelError
from radvigil.model.byom.spec import GraphCheck, ModelSpec
from radvigil.model.byom.wrap import expose
from radvigil.model.engine import session_options

SUM_TOLERANCE = 1e-3
BATCH = 32


def vendor_batch(images: list[np.ndarray], spec: ModelSpec, check: GraphCheck) -> np.ndarray:
    """uint8 grayscale images prepared exactly as the spec declares, in the spec's layout."""
    mean = np.asarray(spec.input.per_channel(spec.input.mean), dtype=np.float32)
    std = np.asarray(spec.input.per_channel(spec.input.std), dtype=np.float32)
    out = np.empty((len(images), spec.input.channels, check.height, check.width), np.float32)
    for i, pixels in enumerate(images):
        shrinking = pixels.shape[0] > check.height or pixels.shape[1] > check.width
        resized = cv2.resize(
            pixels,
            (check.width, check.height),
            interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
        )
        scaled = resized.astype(np.float32) / spec.input.scale
        out[i] = (scaled[None] - mean[:, None, None]) / std[:, None, None]
    return out.transpose(0, 2, 3, 1) if spec.input.layout == "NHWC" else out


@dataclass(frozen=True)
class VendorOutputs:
    """The vendor graph's raw scores and (when it has one) embedding tensor on real images."""

    scores: np.ndarray
    embedding: np.ndarray | None


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A CPU ORT session of ``model`` (ModelError when ONNX Runtime refuses it)."""
    try:
        return ort.InferenceSession(
            model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidGraph, ...)
        raise ModelError(f"ONNX Runtime cannot load the graph: {exc}") from exc


def run_vendor(
    model: onnx.ModelProto, spec: ModelSpec, check: GraphCheck, images: list[np.ndarray]
) -> VendorOutputs:
    """Scores (and embedding) of the unwrapped graph on ``images``, batch by batch."""
    sess = session(expose(model, spec, check))
    scores, embeddings = [], []
    for start in range(0, len(images), BATCH):
        batch = vendor_batch(images[start : start + BATCH], spec, check)
        try:
            outs = sess.run(None, {spec.input.name: batch})
        except Exception as exc:  # ORT's runtime failures (shape mismatch, ...) have own types
            raise ModelError(f"the graph fails on real images: {exc}") from exc
        scores.append(np.asarray(outs[0]))
        if len(outs) > 1:
            embeddings.append(np.asarray(outs[1]))
    return VendorOutputs(np.concatenate(scores), np.concatenate(embeddings) if embeddings else None)


def check_outputs(outputs: VendorOutputs, spec: ModelSpec) -> None:
    """Refuse wrong shapes, NaN/Inf, and declared probabilities that are not probabilities."""
    scores = outputs.scores
    n = len(spec.classes)
    if scores.ndim != 2 or scores.shape[1] != n:
        raise ModelError(
            f"output {spec.output.name!r} has shape {list(scores.shape)} on real images, "
            f"expected [N, {n}] for classes {spec.classes}"
        )
    bad = int((~np.isfinite(scores)).any(axis=1).sum())
    if bad:
        raise ModelError(
            f"output {spec.output.name!r} is NaN or infinite on {bad} of {len(scores)} real "
            "validation images"
        )
    if spec.output.kind == "probabilities":
        sums = scores.sum(axis=1)
        off = float(np.abs(sums - 1.0).max())
        if scores.min() < 0 or scores.max() > 1 or off > SUM_TOLERANCE:
            raise ModelError(
                f"output {spec.output.name!r} is declared as probabilities but is not: values "
                f"in [{scores.min():.3g}, {scores.max():.3g}], row sums off 1 by up to "
                f"{off:.3g}; declare kind: logits if it is not softmaxed"
            )
    if outputs.embedding is not None and not np.isfinite(outputs.embedding).all():
        raise ModelError("the embedding tensor is NaN or infinite on real validation images")
