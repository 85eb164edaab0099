"""Import an outside ONNX model as a registered version: check, calibrate, profile, gate, audit.

Everything after registration treats an imported version like a trained one: the served graph
has radvigil's contract (:mod:`radvigil.model.byom.wrap`), the reference profile is built by the
same :func:`build_profile`, the evaluation and gates are the same :func:`evaluate_version` and
:func:`gate_version` a trained version gets. A failure at any step leaves no version: checks run
before the MLflow run exists, and a version registered before a later step fails is deleted.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.manifest import DatasetVersion
from radvigil.errors import DataError, ModelError, NotFoundError
from radvigil.evaluation import GateCriteria, Verdict
from radvigil.loop.actions import Recorder
from radvigil.loop.deployment import Deployments
from radvigil.loop.evaluation import (
    evaluate_version,
    gate_version,
    record_gate,
    write_and_log,
)
from radvigil.loop.profiling import build_profile
from radvigil.model.byom.extractor import extractor_graph
from radvigil.model.byom.prepare import (
    Prepared,
    VendorFile,
    fit_calibration,
    prepare,
    read_vendor_file,
)
from radvigil.model.byom.record import ImportRecord
from radvigil.model.byom.spec import ModelSpec, check_graph
from radvigil.model.byom.wrap import served_size, set_temperature
from radvigil.model.card import InputSpec, ModelCard
from radvigil.model.dataset import ArraySet, load_split
from radvigil.model.engine import OnnxEngine
from radvigil.model.preprocess import MEAN, STD, normalise
from radvigil.registry import (
    CARD_DIR,
    LoadedModel,
    Registry,
    Tag,
    TrainingRun,
    git_commit,
)

log = logging.getLogger(__name__)
VENDOR_FILE = "vendor.onnx"


@dataclass(frozen=True)
class ImportRequest:
    """What the importer declares about the file (recorded as stated, not verified)."""

    file: Path
    spec: ModelSpec
    data_ref: str
    importer: str
    name: str | None = None
    source: str = "not declared"
    licence: str = "not declared"
    intended_use: str = "not declared"
    keep_vendor_thresholds: bool = False


@dataclass(frozen=True)
class ImportOutcome:
    """The registered version, its card, and its gate verdict (None when not gated)."""

    name: str
    version: str
    run_id: str
    card: ModelCard
    verdict: Verdict | None
    report: Path


def _verified(prepared: Prepared, vendor: VendorFile, n_val: int) -> list[str]:
    emb = "its own embedding tensor" if prepared.extractor is None else "the fixed extractor"
    return [
        f"the file parses as ONNX and passes onnx.checker (full check); sha256 {vendor.sha256}",
        "the spec's input/output names, ranks, element type and static dimensions match the graph",
        f"ONNX Runtime runs it on {n_val} real validation images: output shape [N, "
        f"{len(prepared.task.classes)}], no NaN/Inf, probabilities valid after the declared "
        "transform",
        "the wrapped graph equals the spec's preprocessing applied by hand (max difference "
        f"{prepared.metrics['onnx_parity_max_abs_diff']:.1e})",
        f"temperature and thresholds: {prepared.thresholds_from}",
        f"the reference profile for monitoring is built from {emb} on the validation split",
        "discrimination, calibration and subgroups on the test split, and the same gates as a "
        "trained version (see the evaluation report and the gate tag)",
    ]


def _card(
    request: ImportRequest, prepared: Prepared, vendor: VendorFile, data_id: str
) -> ModelCard:
    record = ImportRecord(
        file_name=vendor.name,
        file_sha256=vendor.sha256,
        file_bytes=vendor.size,
        source=request.source,
        licence=request.licence,
        intended_use=request.intended_use,
        importer=request.importer,
        imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        validation_data_version=data_id,
        spec=request.spec.model_dump(mode="json"),
        thresholds_from=prepared.thresholds_from,
        embedding_from=(
            f"the model's own tensor {prepared.check.embedding_tensor!r}"
            if prepared.extractor is None
            else "the fixed extractor (see extractor)"
        ),
        extractor=prepared.extractor,
        verified=_verified(prepared, vendor, len(prepared.probs)),
    )
    return ModelCard(
        name=request.name or prepared.task.name,
        task=prepared.task,
        backbone=f"imported:{vendor.name}",
        input=InputSpec(size=prepared.size, mean=MEAN, std=STD),
        temperature=prepared.temperature,
        thresholds=prepared.thresholds,
        training_data_version=data_id,
        code_commit=git_commit(),
        config={},
        metrics=prepared.metrics,
        embedding_dim=int(prepared.embeddings.shape[1]),
        caveats=[
            "imported: radvigil did not train this model; it cannot be retrained here (site "
            "calibration or a new vendor version instead)"
        ],
        imported=record,
    )


def import_model(
    request: ImportRequest,
    catalog: DatasetCatalog,
    registry: Registry,
    *,
    max_bytes: int,
    extractor_cache: Path,
    reports_dir: Path,
    criteria: GateCriteria | None,
    against: str | None = "champion",
    record: Recorder | None = None,
    deployments: Deployments | None = None,
) -> ImportOutcome:
    """Check, wrap, calibrate, profile, register, evaluate and gate one outside ONNX file.

    Raises:
        ModelError: the file or graph is refused (nothing is registered).
        ConfigError: the spec is inconsistent with the task or the flags.
        DataError: the data version has no validation split.
    """
    vendor = read_vendor_file(request.file, max_bytes)
    task = request.spec.resolved_task()
    version = catalog.load(request.data_ref)
    size = served_size(check_graph(vendor.model, request.spec))  # refusals before decoding
    val_set = load_split(version, "val", task, size)
    prepared = prepare(
        vendor,
        request.spec,
        val_set,
        keep_vendor_thresholds=request.keep_vendor_thresholds,
        extractor=lambda s: extractor_graph(s, extractor_cache),
    )
    card = _card(request, prepared, vendor, version.id)
    tags = {
        Tag.DATA_VERSION: version.id,
        Tag.CODE_COMMIT: card.code_commit,
        Tag.TASK: task.name,
        Tag.IMPORTED: vendor.sha256,
    }
    run = TrainingRun(registry, task.name, f"{task.name}-import-{vendor.name}", tags)
    registered: str | None = None
    try:
        run.log_params(
            {
                "import.file": vendor.name,
                "import.sha256": vendor.sha256,
                "import.source": request.source,
                "import.licence": request.licence,
                "import.intended_use": request.intended_use,
                "import.importer": request.importer,
                "input_size": prepared.size,
                "spec": json.dumps(request.spec.model_dump(mode="json")),
            }
        )
        registered = register_wrapped(
            run,
            card,
            prepared.graph,
            version,
            val_set,
            prepared.probs,
            prepared.embeddings,
            request.file.read_bytes(),
        )
        run.log_metrics(prepared.metrics)
        verdict, report = _evaluate_and_gate(
            registry,
            catalog,
            card.name,
            registered,
            request.data_ref,
            criteria,
            against,
            reports_dir,
            actor=request.importer,
            deployments=deployments,
        )
        run.finish()
    except BaseException:
        if registered is not None:
            registry.delete_version(card.name, registered)
        run.finish("FAILED")
        raise
    if record is not None:
        record(
            "import",
            request.importer,
            registered,
            {
                "sha256": vendor.sha256,
                "source": request.source,
                "licence": request.licence,
                "validation_data_version": version.id,
                "gate": None if verdict is None else verdict.passed,
            },
        )
    return ImportOutcome(card.name, registered, run.run_id, card, verdict, report)


def register_wrapped(
    run: TrainingRun,
    card: ModelCard,
    graph: onnx.ModelProto,
    version: DatasetVersion,
    val_set: ArraySet,
    probs: np.ndarray,
    embeddings: np.ndarray,
    vendor_bytes: bytes,
) -> str:
    """Log the card, the vendor's file and the reference profile, register the served graph,
    tag the new version with its lineage, and return its number."""
    record = card.imported
    if record is None:
        raise ModelError(f"{card.name} is not an imported model")
    run.log_dataset(version.split("val").frame, version.id, str(version.root), "validation")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / CARD_DIR
        folder.mkdir()
        (folder / "card.json").write_text(card.model_dump_json(indent=2))
        (folder / VENDOR_FILE).write_bytes(vendor_bytes)
        info = {"model": card.name, "dataset_version": version.id, "embedding": "own"}
        if record.extractor is not None:
            extractor = {f"extractor.{k}": str(v) for k, v in record.extractor.model_dump().items()}
            info = {**info, "embedding": "extractor", **extractor}
        build_profile(
            version,
            val_set.frame,
            val_set.targets,
            probs,
            embeddings,
            card.task.classes,
            folder / "profile",
            info,
        )
        run.log_artifacts(folder, CARD_DIR)
        graph_path = Path(tmp) / "model.onnx"
        onnx.save(graph, str(graph_path))
        example = normalise(val_set.images[:1])[:, None].astype(np.float32)
        registered = run.register_onnx(graph_path, card.name, example)
    for key, value in (
        (Tag.DATA_VERSION, version.id),
        (Tag.THRESHOLDS, str(card.thresholds)),
        (Tag.TEMPERATURE, f"{card.temperature:.4f}"),
        (Tag.IMPORTED, record.file_sha256),
    ):
        run.registry.set_version_tag(card.name, registered, key, value)
    return registered


def recalibrate_imported(
    champion: LoadedModel,
    data_ref: str,
    catalog: DatasetCatalog,
    registry: Registry,
    tags: dict[str, str],
    caveat: str,
) -> tuple[str, str, ModelCard]:
    """Site calibration of an imported version: the same graph with temperature and thresholds
    refitted on ``data_ref``'s validation split, registered as a new version (name, number,
    card). The vendor's file, spec and lineage carry over unchanged."""
    card = champion.card
    version = catalog.load(data_ref)
    val_set = load_split(version, "val", card.task, card.input.size)
    if len(val_set) == 0:
        raise DataError(f"dataset {version.id} has no validation cases to calibrate on")
    graph = set_temperature(onnx.load(str(champion.onnx_path)), 1.0)
    probs1, embeddings = OnnxEngine(graph.SerializeToString()).run(
        normalise(val_set.images)[:, None]
    )
    temperature, thresholds, _, probs, metrics = fit_calibration(probs1, card.task, val_set)
    new_card = card.model_copy(
        update={
            "temperature": temperature,
            "thresholds": thresholds,
            "metrics": {**card.metrics, **metrics},
            "caveats": [*card.caveats, caveat],
        }
    )
    run = TrainingRun(registry, card.task.name, f"{card.task.name}-site-calibration", tags)
    registered: str | None = None
    try:
        run.log_metrics(metrics)
        registered = register_wrapped(
            run,
            new_card,
            set_temperature(graph, temperature),
            version,
            val_set,
            probs,
            embeddings,
            (champion.folder / CARD_DIR / VENDOR_FILE).read_bytes(),
        )
        run.finish()
    except BaseException:
        if registered is not None:
            registry.delete_version(new_card.name, registered)
        run.finish("FAILED")
        raise
    return new_card.name, registered, new_card


def _evaluate_and_gate(
    registry: Registry,
    catalog: DatasetCatalog,
    name: str,
    version_id: str,
    data_ref: str,
    criteria: GateCriteria | None,
    against: str | None,
    reports_dir: Path,
    *,
    actor: str,
    deployments: Deployments | None,
) -> tuple[Verdict | None, Path]:
    """The evaluation report on the hold-out (test, else val) and the trained path's gates,
    recorded as every gate is (the MLflow tag and, under registry trust, the signed record)."""
    loaded = registry.load(f"{name}/{version_id}")
    data = catalog.load(data_ref)
    split = "test" if (data.frame["split"] == "test").any() else "val"
    result, _ = evaluate_version(loaded, data, split)
    verdict = None
    if criteria is not None:
        champion = None
        if against and against.lower() != "none":
            ref = against if ("@" in against or "/" in against) else f"{name}@{against}"
            try:
                champion = registry.load(ref)
            except NotFoundError:
                log.info("no %s yet: the import is gated without a champion comparison", ref)
        verdict = gate_version(criteria, loaded, champion, data, split)
        record_gate(registry, loaded, verdict, criteria, actor=actor, deployments=deployments)
    folder = reports_dir / f"{name}-v{version_id}-{data.id}-{split}"
    html, _ = write_and_log(result, verdict, folder, registry, loaded, data.id, split)
    return verdict, html
