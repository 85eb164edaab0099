"""A training job end to end: data version -> train -> calibrate -> ONNX -> MLflow version."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.manifest import DatasetVersion
from radvigil.data.quality import exclude_failing as exclude
from radvigil.data.quality import run_qc
from radvigil.errors import DataError, ModelError
from radvigil.loop.profiling import build_profile
from radvigil.model import figures
from radvigil.model.card import InputSpec, ModelCard
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet, load_split, oversampled
from radvigil.model.engine import OnnxEngine
from radvigil.model.export import PARITY_TOLERANCE, export_onnx, parity, quantize
from radvigil.model.preprocess import MEAN, STD, normalise
from radvigil.model.ray_runtime import check_address
from radvigil.model.train import TrainObserver, TrainResult, train
from radvigil.registry import INT8_FILE, Registry, Tag, TrainingRun, git_commit
from radvigil.task import Task, load_task

log = logging.getLogger(__name__)
Progress = Callable[[Iterable], Iterable]


@dataclass(frozen=True)
class RayBackend:
    """Train on Ray Train workers instead of in this process."""

    workers: int
    storage: str
    address: str | None = None
    use_gpu: bool = False


@dataclass(frozen=True)
class TrainOutcome:
    """What a training job registered."""

    name: str
    version: str
    run_id: str
    card: ModelCard
    result: TrainResult | None  # None for a recalibrated imported graph (no training result)


class _RunLogger:
    """Forwards training progress to MLflow (per-epoch metrics) and to the caller's observer."""

    def __init__(self, run: TrainingRun, inner: TrainObserver | None) -> None:
        self.run, self.inner = run, inner

    def epoch_started(self, epoch: int, batches: int) -> None:
        if self.inner:
            self.inner.epoch_started(epoch, batches)

    def batch_done(self, loss: float) -> None:
        if self.inner:
            self.inner.batch_done(loss)

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log_metrics(
            {f"val_{k}" if k != "train_loss" and k != "lr" else k: v for k, v in metrics.items()},
            step=epoch,
        )
        if self.inner:
            self.inner.epoch_done(epoch, metrics)


def with_target(task: Task, target: float | None) -> Task:
    """``task`` with every finding's threshold aimed at ``target`` (unchanged when None); the
    card records the task as trained, so the target a version's thresholds meet is on record."""
    if target is None:
        return task
    return task.model_copy(update={"target_sensitivity": dict.fromkeys(task.findings, target)})


def flat_params(cfg: TrainConfig, task: Task, size: int) -> dict[str, object]:
    params = cfg.model_dump(exclude={"augment"})
    params.update({f"augment.{k}": v for k, v in cfg.augment.model_dump().items()})
    params.update(
        {
            "input_size": size,
            "task.classes": ",".join(task.classes),
            "task.findings": ",".join(task.findings),
        }
    )
    return params


def qc_checked_version(
    catalog: DatasetCatalog, data_ref: str, *, exclude_failing: bool = False
) -> str:
    """The id of the version to train on: ``data_ref`` when no image fails QC.

    A version with failing images (unreadable, leaking across splits, ...) is refused unless
    ``exclude_failing``: then a child version without them is saved and returned.

    Raises:
        DataError: when images fail QC and ``exclude_failing`` is False.
    """
    version = catalog.load(data_ref)
    report = run_qc(version)
    failing = report.failing_paths()
    if not failing:
        return version.id
    if not exclude_failing:
        raise DataError(
            f"{len(failing)} image(s) of dataset version {version.id} fail QC; run "
            "`radvigil data validate` to see them, then train with --exclude-failing "
            "or on the version `data validate --exclude` saves"
        )
    kept = exclude(version, report)
    log.info("training without %d failing image(s) of %s", len(failing), version.id)
    return catalog.save(kept)


def run_training(
    cfg: TrainConfig,
    data_ref: str,
    catalog: DatasetCatalog,
    registry: Registry,
    *,
    observer: TrainObserver | None = None,
    progress: Progress = lambda items: items,
    extra_tags: dict[str, str] | None = None,
    caveats: list[str] | None = None,
    ray: RayBackend | None = None,
) -> TrainOutcome:
    """Train (in process, or on Ray with ``ray``), calibrate, export and register one version."""
    task = with_target(load_task(cfg.task), cfg.target_sensitivity)
    size = cfg.input_size or task.input_size
    version = catalog.load(data_ref)
    if ray is not None:
        check_address(ray.address)
    train_set = oversampled(
        load_split(
            version,
            "train",
            task,
            size,
            limit=cfg.max_train_images,
            seed=cfg.seed,
            progress=progress,
        ),
        cfg.oversample,
    )
    val_set = load_split(version, "val", task, size, progress=progress)
    name = cfg.registered_name or task.name
    run = open_run(registry, cfg, task, size, version, extra_tags or {}, _backend_params(ray))
    try:
        if ray is None:
            result = train(cfg, task, train_set, val_set, _RunLogger(run, observer))
        else:
            result = _train_on_ray(cfg, task, train_set, val_set, ray, run, observer)
        return register_result(cfg, task, size, version, result, run, name, val_set, caveats)
    except BaseException:
        run.finish("FAILED")
        raise


def open_run(
    registry: Registry,
    cfg: TrainConfig,
    task: Task,
    size: int,
    version: DatasetVersion,
    extra_tags: dict[str, str],
    extra_params: dict[str, object],
) -> TrainingRun:
    """An MLflow run for one model version, with its lineage tags, parameters and data inputs."""
    tags = {
        Tag.DATA_VERSION: version.id,
        Tag.CODE_COMMIT: git_commit(),
        Tag.TASK: task.name,
        **extra_tags,
    }
    run = TrainingRun(registry, task.name, f"{task.name}-{cfg.backbone}", tags)
    run.log_params({**flat_params(cfg, task, size), **extra_params})
    run.log_dataset(version.split("train").frame, version.id, str(version.root), "training")
    run.log_dataset(version.split("val").frame, version.id, str(version.root), "validation")
    return run


def register_result(
    cfg: TrainConfig,
    task: Task,
    size: int,
    version: DatasetVersion,
    result: TrainResult,
    run: TrainingRun,
    name: str,
    val_set: ArraySet,
    caveats: list[str] | None = None,
) -> TrainOutcome:
    """Export, check and register a trained (or recalibrated) model, then close its run."""
    with tempfile.TemporaryDirectory() as tmp:
        outcome = _export_and_register(
            cfg,
            task,
            size,
            version,
            git_commit(),
            result,
            run,
            name,
            val_set,
            Path(tmp),
            caveats or [],
        )
    run.finish()
    return outcome


def _backend_params(ray: RayBackend | None) -> dict[str, object]:
    if ray is None:
        return {"backend": "local"}
    return {"backend": "ray", "ray.workers": ray.workers, "ray.use_gpu": ray.use_gpu}


def _train_on_ray(
    cfg: TrainConfig,
    task: Task,
    train_set: ArraySet,
    val_set: ArraySet,
    ray: RayBackend,
    run: TrainingRun,
    observer: TrainObserver | None,
) -> TrainResult:
    """Ray Train workers print their epochs live; MLflow gets the per-epoch metrics afterwards."""
    from radvigil.model.distributed import train_ray

    run.set_tag(Tag.RAY_RUN, f"{ray.storage}/{run.run_id}")
    return train_ray(
        cfg,
        task,
        train_set,
        val_set,
        workers=ray.workers,
        storage=ray.storage,
        run_name=run.run_id,
        address=ray.address,
        use_gpu=ray.use_gpu,
        observer=_RunLogger(run, observer),
    )


def _export_and_register(
    cfg: TrainConfig,
    task: Task,
    size: int,
    version: DatasetVersion,
    commit: str,
    result: TrainResult,
    run: TrainingRun,
    name: str,
    val_set: ArraySet,
    tmp: Path,
    caveats: list[str],
) -> TrainOutcome:
    data_version, val_images = version.id, val_set.images
    onnx_path = export_onnx(result.model, result.temperature, size, tmp / "model.onnx")
    batch = normalise(val_images[:16])[:, None]
    diff = parity(result.model, result.temperature, onnx_path, batch)
    if diff >= PARITY_TOLERANCE:
        raise ModelError(f"ONNX output differs from PyTorch by {diff:.2e} (limit 1e-4)")
    metrics = {**result.metrics, "onnx_parity_max_abs_diff": diff, "best_epoch": result.best_epoch}
    weights = result.model.weights_record
    if weights is not None:  # source, licence, sha256 and architecture of the starting weights
        run.log_params({f"weights.{k}": v for k, v in weights.model_dump().items()})
        run.set_tag(Tag.WEIGHTS_SHA256, weights.sha256)
    if cfg.quantize:
        metrics.update(_quantize(onnx_path, val_images, result, tmp))
    # per-epoch val_* series stay as logged; their best-epoch values get a best_ prefix
    per_epoch = {f"val_{k}" for k in ("macro_f1", "accuracy", "finding_sensitivity")}
    run.log_metrics({f"best_{k}" if k in per_epoch else k: v for k, v in metrics.items()})
    card = ModelCard(
        name=name,
        task=task,
        backbone=cfg.backbone,
        input=InputSpec(size=size, mean=MEAN, std=STD),
        temperature=result.temperature,
        thresholds=result.thresholds,
        site_thresholds=result.site_thresholds,
        training_data_version=data_version,
        code_commit=commit,
        config=cfg.model_dump(mode="json"),
        metrics=metrics,
        embedding_dim=result.model.embedding_dim,
        quantized=cfg.quantize,
        weights=weights,
        caveats=caveats,
    )
    card_dir = tmp / "radvigil"
    card_dir.mkdir()
    (card_dir / "card.json").write_text(card.model_dump_json(indent=2))
    torch.save(result.model.state_dict(), card_dir / "weights.pt")  # for Grad-CAM explanations
    build_profile(
        version,
        val_set.frame,
        val_set.targets,
        result.val_probs,
        result.val_embeddings,
        task.classes,
        card_dir / "profile",
        {"model": name, "dataset_version": data_version},
    )
    if (tmp / INT8_FILE).exists():
        (tmp / INT8_FILE).rename(card_dir / INT8_FILE)
    run.log_artifacts(card_dir, "radvigil")
    if result.history:  # a recalibrated version has no epochs of its own
        curves = figures.learning_curves(result.history)
        run.log_figure(curves, "figures/learning_curves.png")
        plt.close(curves)
    model_version = run.register_onnx(onnx_path, name, batch[:1])
    for key, value in (
        (Tag.DATA_VERSION, data_version),
        (Tag.CODE_COMMIT, commit),
        (Tag.THRESHOLDS, str(result.thresholds)),
        (Tag.TEMPERATURE, f"{result.temperature:.4f}"),
    ):
        run.registry.set_version_tag(name, model_version, key, value)
    return TrainOutcome(name, model_version, run.run_id, card, result)


def _quantize(onnx_path: Path, val_images: np.ndarray, result: TrainResult, tmp: Path) -> dict:
    """Static int8 model and its accuracy delta on validation (argmax agreement and accuracy)."""
    calibration = normalise(val_images[:64])[:, None]
    q_path = quantize(onnx_path, calibration, tmp / INT8_FILE)
    fp32 = OnnxEngine(onnx_path).run(normalise(val_images)[:, None])[0]
    int8 = OnnxEngine(q_path).run(normalise(val_images)[:, None])[0]
    return {
        "int8_argmax_agreement": float((fp32.argmax(1) == int8.argmax(1)).mean()),
        "int8_max_prob_diff": float(np.abs(fp32 - int8).max()),
    }
