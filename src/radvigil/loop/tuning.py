"""A tuning job: data version -> Ray Tune trials -> MLflow parent/child runs -> best config YAML."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from radvigil.data.catalog import DatasetCatalog
from radvigil.loop.training import Progress, flat_params
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import load_split
from radvigil.model.ray_runtime import check_address
from radvigil.model.tuning import SearchSpace, Trial, TuneResult, tune_hyperparameters
from radvigil.registry import Registry, Tag, TrainingRun, git_commit
from radvigil.task import load_task


@dataclass(frozen=True)
class TuningOutcome:
    """The MLflow parent run, every trial, and where the best configuration was written."""

    run_id: str
    result: TuneResult
    config_path: Path


def run_tuning(
    base: TrainConfig,
    space: SearchSpace,
    data_ref: str,
    catalog: DatasetCatalog,
    registry: Registry,
    *,
    trials: int,
    storage: str,
    config_dir: Path,
    output: Path | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    progress: Progress = lambda items: items,
    on_trial_done: Callable[[], None] = lambda: None,
) -> TuningOutcome:
    """Tune ``base`` over ``space`` on the version's train/val splits and log every trial.

    The best configuration is written to ``output``, or ``config_dir/<MLflow run id>.yaml``.
    """
    task = load_task(base.task)
    size = base.input_size or task.input_size
    version = catalog.load(data_ref)
    check_address(address)
    train_set = load_split(
        version, "train", task, size, limit=base.max_train_images, seed=base.seed, progress=progress
    )
    val_set = load_split(version, "val", task, size, progress=progress)
    tags = {
        Tag.DATA_VERSION: version.id,
        Tag.CODE_COMMIT: git_commit(),
        Tag.TASK: task.name,
        Tag.KIND: "tuning",
    }
    parent = TrainingRun(registry, task.name, f"tune-{task.name}-{base.backbone}", tags)
    try:
        parent.log_params(
            {
                **flat_params(base, task, size),
                "tune.trials": trials,
                "tune.metric": space.metric,
                "tune.grace_epochs": space.grace_epochs,
                "tune.cpus_per_trial": cpus_per_trial,
                "tune.space": json.dumps(space.model_dump(mode="json", exclude_none=True)),
            }
        )
        parent.log_dataset(version.split("train").frame, version.id, str(version.root), "training")
        parent.log_dataset(version.split("val").frame, version.id, str(version.root), "validation")
        result = tune_hyperparameters(
            base,
            task,
            train_set,
            val_set,
            space,
            trials=trials,
            storage=storage,
            run_name=parent.run_id,
            cpus_per_trial=cpus_per_trial,
            address=address,
            on_trial_done=on_trial_done,
        )
        for trial in result.trials:
            _log_trial(registry, task.name, tags, parent.run_id, trial, space.metric)
        path = output or config_dir / f"{parent.run_id}.yaml"
        _write_config(path, result, version.id, parent.run_id)
        parent.log_artifact(path, "tuning")
        parent.log_metrics({f"best_val_{space.metric}": result.best.best})
        parent.set_tag(Tag.BEST_TRIAL, result.best.trial_id)
        parent.finish()
        return TuningOutcome(parent.run_id, result, path)
    except BaseException:
        parent.finish("FAILED")
        raise


def _log_trial(
    registry: Registry, task: str, tags: dict, parent_id: str, trial: Trial, metric: str
) -> None:
    """One nested MLflow run per trial: its overrides, per-epoch metrics and best value."""
    run = TrainingRun(
        registry,
        task,
        f"trial-{trial.trial_id}",
        {**tags, Tag.KIND: "tuning-trial"},
        parent_id,
    )
    run.log_params({**trial.overrides, "status": trial.status, "epochs_run": trial.epochs})
    for row in trial.history:
        step = int(row["epoch"])
        run.log_metrics(
            {
                f"val_{k}" if k not in ("train_loss", "lr") else k: v
                for k, v in row.items()
                if k != "epoch"
            },
            step=step,
        )
    if not math.isnan(trial.best):
        run.log_metrics({f"best_val_{metric}": trial.best})
    if trial.error:
        run.set_tag(Tag.ERROR, trial.error[:5000])
    run.finish("FAILED" if trial.status == "failed" else "FINISHED")


def _write_config(path: Path, result: TuneResult, data_version: str, run_id: str) -> None:
    """The best trial's full training config, ready for ``radvigil train --config``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Best of {len(result.trials)} trials by validation {result.metric} "
        f"({result.best.best:.4f}), trial {result.best.trial_id}.\n"
        f"# radvigil tune, MLflow run {run_id}, data version {data_version}.\n"
        f"# Tuned: {', '.join(f'{k}={v}' for k, v in sorted(result.best.overrides.items()))}\n"
    )
    body = yaml.safe_dump(result.best_config.model_dump(mode="json"), sort_keys=False)
    path.write_text(header + body)
