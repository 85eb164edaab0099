"""Hyperparameter search on Ray Tune with Optuna's TPE sampler (``radvigil tune``).

A search space is YAML naming :class:`~radvigil.model.config.TrainConfig` fields (``augment.*``
for augmentations) and a distribution for each. Every trial is one in-process training run
(:func:`radvigil.model.train.train`) that reports validation metrics per epoch; ASHA stops
trials that trail the others after ``grace_epochs``. Nothing is registered here: the caller
logs the trials and writes the best configuration for ``radvigil train``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from radvigil.errors import ConfigError, ModelError
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet
from radvigil.model.ray_runtime import ray_session
from radvigil.model.train import Silent, train
from radvigil.task import Task, task_from_dict
from radvigil.yaml_files import load_yaml_model

_NOT_TUNABLE = {"task", "registered_name", "weights", "seed", "max_train_images"}


class Distribution(BaseModel):
    """One search dimension: exactly one of ``uniform``, ``loguniform``, ``randint``, ``choice``."""

    model_config = {"extra": "forbid"}

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="low inclusive, high exclusive")
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [k for k in ("uniform", "loguniform", "randint", "choice") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, randint, choice")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds and not bounds[0] < bounds[1]:
            raise ValueError(f"low must be below high, got {list(bounds)}")
        if self.loguniform and self.loguniform[0] <= 0:
            raise ValueError("loguniform bounds must be positive")
        return self

    def sample_values(self) -> list[Any]:
        """Values that must all be valid for the field: the bounds or every choice."""
        if self.choice is not None:
            return list(self.choice)
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is None:
            raise ValueError("a search dimension needs a range or choices")
        low, high = bounds
        return [low, high - 1] if self.randint else [low, high]

    def to_tune(self):
        from ray import tune

        if self.uniform:
            return tune.uniform(*self.uniform)
        if self.loguniform:
            return tune.loguniform(*self.loguniform)
        if self.randint:
            return tune.randint(*self.randint)
        return tune.choice(list(self.choice or ()))


class SearchSpace(BaseModel):
    """What ``radvigil tune`` varies, what it maximises, and when ASHA may stop a trial."""

    model_config = {"extra": "forbid"}

    metric: Literal["macro_f1", "finding_sensitivity", "accuracy"] = "macro_f1"
    grace_epochs: int = Field(2, ge=1, description="epochs every trial runs before ASHA may stop")
    params: dict[str, Distribution] = Field(min_length=1)


def load_space(path: Path, base: TrainConfig) -> SearchSpace:
    """Read a search-space YAML and check every value it can produce against ``base``."""
    space = load_yaml_model(path, SearchSpace, "search space")
    for name, dist in space.params.items():
        if name in _NOT_TUNABLE:
            raise ConfigError(f"{path}: {name} cannot be tuned")
        for value in dist.sample_values():
            try:
                apply_overrides(base, {name: value})
            except ConfigError as exc:
                raise ConfigError(f"{path}: params.{name}: {exc.message}") from exc
    return space


def apply_overrides(base: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``base`` with dotted fields replaced (``lr``, ``augment.rotation``), validated again."""
    data = base.model_dump(mode="json")
    for name, value in overrides.items():
        head, _, tail = name.partition(".")
        if head not in data or (
            tail and (not isinstance(data[head], dict) or tail not in data[head])
        ):
            raise ConfigError(f"{name} is not a training config field")
        if tail:
            data[head][tail] = value
        else:
            data[head] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{field}={overrides.get(field)!r}: {first['msg']}") from exc


@dataclass(frozen=True)
class Trial:
    """One finished trial: what it tried and what it reached."""

    trial_id: str
    overrides: dict[str, Any]
    history: list[dict[str, float]]
    best: float
    status: Literal["ok", "failed"]
    error: str | None = None

    @property
    def epochs(self) -> int:
        """Epochs run: fewer than configured when ASHA or early stopping ended the trial."""
        return len(self.history)


@dataclass(frozen=True)
class TuneResult:
    """All trials, and the best one's overrides and full configuration."""

    metric: str
    trials: list[Trial]
    best: Trial
    best_config: TrainConfig


def tune_hyperparameters(
    base: TrainConfig,
    task: Task,
    train_set: ArraySet,
    val_set: ArraySet,
    space: SearchSpace,
    *,
    trials: int,
    storage: str,
    run_name: str,
    cpus_per_trial: float = 1.0,
    address: str | None = None,
    on_trial_done: Callable[[], None] = lambda: None,
) -> TuneResult:
    """Run ``trials`` seeded Optuna-suggested trials on Ray Tune; keep the best by ``metric``."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if "://" not in storage:
        Path(storage).mkdir(parents=True, exist_ok=True)
        storage = str(Path(storage).resolve())
    with ray_session(address, need_cpus=cpus_per_trial, what="one tuning trial"):
        trainable = tune.with_resources(
            tune.with_parameters(
                _trial,
                base=base.model_dump(mode="json"),
                task=task.model_dump(mode="json"),
                train_set=train_set,
                val_set=val_set,
                threads=max(1, math.floor(cpus_per_trial)),
            ),
            {"cpu": cpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={name: dist.to_tune() for name, dist in space.params.items()},
            tune_config=tune.TuneConfig(
                metric=space.metric,
                mode="max",
                search_alg=OptunaSearch(seed=base.seed),
                scheduler=ASHAScheduler(
                    time_attr="training_iteration",
                    max_t=base.epochs,
                    grace_period=min(space.grace_epochs, base.epochs),
                ),
                num_samples=trials,
            ),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=storage,
                verbose=0,
                callbacks=[_progress_callback(on_trial_done)],
            ),
        )
        try:
            grid = tuner.fit()
        except (ray.exceptions.RayError, tune.TuneError) as exc:
            raise ModelError(f"Ray Tune failed: {exc}") from exc
    done = [_trial_of(grid[i], space.metric) for i in range(len(grid))]
    finished = [t for t in done if t.status != "failed"]
    if not finished:
        raise ModelError(f"every tuning trial failed; first error: {done[0].error}")
    best = max(finished, key=lambda t: t.best)
    return TuneResult(space.metric, done, best, apply_overrides(base, best.overrides))


def _trial(
    config: dict[str, Any],
    base: dict,
    task: dict,
    train_set: ArraySet,
    val_set: ArraySet,
    threads: int,
) -> None:
    """One Ray Tune trial: train in process and report validation metrics every epoch."""
    import torch

    torch.set_num_threads(threads)
    cfg = apply_overrides(TrainConfig.model_validate(base), config)
    train(cfg, task_from_dict(task), train_set, val_set, _TuneReporter())


class _TuneReporter(Silent):
    """A TrainObserver that hands each epoch's validation metrics to Ray Tune."""

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        from ray import tune

        tune.report({"epoch": epoch, **metrics})


def _progress_callback(on_done: Callable[[], None]):
    """A Ray Tune callback calling ``on_done`` whenever a trial ends (the CLI's progress bar)."""
    from ray.tune import Callback

    class TrialEnded(Callback):
        def __init__(self, done: Callable[[], None]) -> None:
            self.on_done = done

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.on_done()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.on_done()

        def __getstate__(self) -> dict:
            # Tune pickles its callbacks into the experiment state; a progress bar (with its
            # lock) cannot be pickled and is meaningless in a restored experiment anyway
            return {}

        def __setstate__(self, state: dict) -> None:
            self.on_done = lambda: None

    return TrialEnded(on_done)


def _trial_of(result, metric: str) -> Trial:
    config = {k: _plain(v) for k, v in (result.config or {}).items()}
    trial_id = str((result.metrics or {}).get("trial_id", Path(str(result.path)).name))
    frame = result.metrics_dataframe
    if result.error is not None or frame is None or metric not in getattr(frame, "columns", []):
        return Trial(trial_id, config, [], float("nan"), "failed", str(result.error))
    keys = ["epoch", "macro_f1", "accuracy", "finding_sensitivity", "train_loss", "lr"]
    history = [{k: float(row[k]) for k in keys if k in row} for row in frame.to_dict("records")]
    return Trial(trial_id, config, history, float(frame[metric].max()), "ok")


def _plain(value: Any) -> Any:
    """Numpy scalars from Optuna to plain Python (YAML and MLflow friendly)."""
    return value.item() if hasattr(value, "item") else value
