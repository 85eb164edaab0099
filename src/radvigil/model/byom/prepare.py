"""Turn an outside ONNX file into a served graph, calibrated on real validation images.

Pure model work (no registry, no database): read and check the file, check the spec against the
graph, run the graph on the validation split, wrap it into radvigil's contract, and fit the
temperature and operating thresholds the way trained models get them
(:func:`~radvigil.model.calibrate.fit_temperature`,
:func:`~radvigil.model.train.operating_thresholds`).
Every refusal is a :class:`ModelError` (or ConfigError/DataError) raised before anything exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from radvigil.errors import ConfigError, DataError, ModelError
from radvigil.model.byom.checks import VendorOutputs, check_outputs, run_vendor
from radvigil.model.byom.extractor import ExtractorRecord
from radvigil.model.byom.spec import GraphCheck, ModelSpec, check_graph
from radvigil.model.byom.wrap import PROBABILITY_FLOOR, served_size, set_temperature, wrap
from radvigil.model.calibrate import fit_temperature, softmax
from radvigil.model.dataset import ArraySet
from radvigil.model.engine import OnnxEngine
from radvigil.model.preprocess import normalise
from radvigil.model.train import operating_thresholds, worst_finding_ece
from radvigil.task import Task

PARITY_TOLERANCE = 1e-4
Extractor = Callable[[int], tuple[onnx.ModelProto, ExtractorRecord]]


@dataclass(frozen=True)
class VendorFile:
    """A read and checked ONNX file with its identity."""

    model: onnx.ModelProto
    sha256: str
    size: int
    name: str


def read_vendor_file(path: Path, max_bytes: int) -> VendorFile:
    """Read ``path`` as ONNX: size limit, protobuf parse, onnx.checker (ModelError naming which).

    Raises:
        ModelError: missing, over ``max_bytes``, not ONNX, truncated or invalid.
    """
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelError(
            f"{path.name} is {size / 2**20:.1f} MiB, over the import limit of "
            f"{max_bytes / 2**20:.0f} MiB (RADVIGIL_IMPORT_MAX_MB)"
        )
    raw = path.read_bytes()
    try:
        model = onnx.load_from_string(raw)
    except (DecodeError, ValueError) as exc:
        raise ModelError(f"{path.name} is not an ONNX model (it does not parse: {exc})") from exc
    if not model.graph.node or not model.opset_import:
        raise ModelError(f"{path.name} is not an ONNX model (no graph nodes or opset)")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{path.name} fails onnx.checker: {str(exc).splitlines()[0]}") from exc
    return VendorFile(model, hashlib.sha256(raw).hexdigest(), size, path.name)


@dataclass(frozen=True)
class Prepared:
    """The served graph and everything the card and the reference profile need."""

    graph: onnx.ModelProto
    check: GraphCheck
    task: Task
    temperature: float
    thresholds: dict[str, float]
    thresholds_from: str
    probs: np.ndarray  # calibrated, on the validation split
    embeddings: np.ndarray
    metrics: dict[str, float]
    extractor: ExtractorRecord | None

    @property
    def size(self) -> int:
        return served_size(self.check)


def _parity(outputs: VendorOutputs, spec: ModelSpec, wrapped_probs: np.ndarray) -> float:
    """Max difference between the wrapped graph (T=1) and the spec applied by hand."""
    if spec.output.kind == "logits":
        expected = softmax(outputs.scores.astype(np.float64))
    else:
        expected = outputs.scores / outputs.scores.sum(axis=1, keepdims=True)
    return float(np.abs(expected - wrapped_probs).max())


def prepare(
    vendor: VendorFile,
    spec: ModelSpec,
    val_set: ArraySet,
    *,
    keep_vendor_thresholds: bool,
    extractor: Extractor,
) -> Prepared:
    """Check, sanity-run, wrap and calibrate ``vendor`` on ``val_set`` (already at the served
    size). ``extractor(size)`` gives the extractor graph when the spec names no embedding.

    Raises:
        ModelError: the graph contradicts the spec or misbehaves on the real images.
        ConfigError: vendor thresholds asked for but not given for every finding.
        DataError: no validation images.
    """
    task = spec.resolved_task()
    check = check_graph(vendor.model, spec)
    if len(val_set) == 0:
        raise DataError("the validation split is empty: nothing to check or calibrate on")
    outputs = run_vendor(vendor.model, spec, check, list(val_set.images))
    check_outputs(outputs, spec)
    graph_ex, record = (
        (None, None) if outputs.embedding is not None else extractor(served_size(check))
    )
    rank = outputs.embedding.ndim if outputs.embedding is not None else None
    wrapped = wrap(
        vendor.model, spec, check, temperature=1.0, embedding_rank=rank, extractor=graph_ex
    )
    x = normalise(val_set.images)[:, None]
    engine = OnnxEngine(wrapped.SerializeToString())
    try:
        probs1, embeddings = engine.run(x)
    except Exception as exc:  # ORT's runtime failures have pybind types of their own
        raise ModelError(f"the wrapped graph fails on real images: {exc}") from exc
    parity = _parity(outputs, spec, probs1)
    if (check.height, check.width) == (val_set.images.shape[1],) * 2 and parity > PARITY_TOLERANCE:
        raise ModelError(
            f"the wrapped graph differs from the spec applied by hand by {parity:.2e} "
            f"(limit {PARITY_TOLERANCE:.0e}); the spec's preprocessing cannot be composed"
        )
    if keep_vendor_thresholds:
        missing = [f for f in task.findings if f not in spec.vendor_thresholds]
        if missing:
            raise ConfigError(
                f"--keep-vendor-thresholds needs vendor_thresholds for every finding; the "
                f"spec lacks {missing}"
            )
    vendor_thresholds = dict(spec.vendor_thresholds) if keep_vendor_thresholds else None
    temperature, thresholds, origin, probs, metrics = fit_calibration(
        probs1, task, val_set, vendor_thresholds
    )
    graph = set_temperature(wrapped, temperature)
    metrics["onnx_parity_max_abs_diff"] = parity
    return Prepared(
        graph,
        check,
        task,
        temperature,
        thresholds,
        origin,
        probs,
        embeddings,
        metrics,
        record,
    )


def fit_calibration(
    probs1: np.ndarray,
    task: Task,
    val_set: ArraySet,
    vendor_thresholds: dict[str, float] | None = None,
) -> tuple[float, dict[str, float], str, np.ndarray, dict[str, float]]:
    """Temperature and operating thresholds from the wrapped graph's T=1 probabilities, as a
    trained model gets them (log-probabilities are logits up to a per-row shift, which softmax
    ignores). With ``vendor_thresholds``: temperature 1 and the vendor's thresholds.

    Returns:
        temperature, thresholds, where they came from, calibrated probabilities, metrics.
    """
    logits = np.log(np.maximum(probs1.astype(np.float64), PROBABILITY_FLOOR))
    if vendor_thresholds is not None:
        temperature, thresholds, origin = 1.0, vendor_thresholds, "the vendor's (kept as given)"
    else:
        temperature = fit_temperature(logits, val_set.targets)
        thresholds = operating_thresholds(softmax(logits, temperature), task, val_set)
        origin = "fitted on validation (temperature scaling, per-finding sensitivity targets)"
    probs = softmax(logits, temperature).astype(np.float32)
    metrics = {
        "val_ece_before": worst_finding_ece(softmax(logits), val_set.targets, task),
        "val_ece_after": worst_finding_ece(probs, val_set.targets, task),
        "temperature": temperature,
        "val_accuracy": float((probs.argmax(1) == val_set.targets).mean()),
    }
    return temperature, thresholds, origin, probs, metrics
