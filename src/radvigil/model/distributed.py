"""Data-parallel training on Ray Train (``radvigil train --backend ray --workers N``).

Each worker trains a DistributedDataParallel copy of the model on its share of every epoch's
shuffled order, evaluates its share of validation, and the workers sum their confusion matrices
so every rank reaches the same metrics and the same early-stopping decision. Rank 0 reports a
checkpoint each epoch holding the best weights so far and the whole history; the driver then
calibrates and chooses thresholds exactly as the in-process backend does.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from radvigil.errors import ModelError
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet
from radvigil.model.network import Classifier, build_classifier
from radvigil.model.ray_runtime import ray_session
from radvigil.model.train import (
    EarlyStopping,
    Silent,
    TrainObserver,
    TrainResult,
    calibrate,
    confusion,
    confusion_metrics,
    optimisation,
    predict_arrays,
    seed_everything,
    set_trainable,
    train_epoch,
    trainable_depth,
)
from radvigil.task import Task, task_from_dict

BEST_WEIGHTS = "best.pt"
HISTORY = "history.json"


def shard_order(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's share of ``order``, padded by wrapping so every rank gets as many items.

    DistributedDataParallel needs the same number of steps on every rank, like torch's
    DistributedSampler (which pads the same way).
    """
    padded = np.resize(order, math.ceil(len(order) / world) * world)
    return padded[rank::world]


def train_ray(
    cfg: TrainConfig,
    task: Task,
    train_set: ArraySet,
    val_set: ArraySet,
    *,
    workers: int,
    storage: Path | str,
    run_name: str,
    address: str | None = None,
    use_gpu: bool = False,
    observer: TrainObserver | None = None,
) -> TrainResult:
    """Train on ``workers`` Ray Train workers; checkpoints go under ``storage``/``run_name``."""
    import ray
    from ray.train import CheckpointConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    observer = observer or Silent()
    storage = str(storage)
    if "://" not in storage:
        Path(storage).mkdir(parents=True, exist_ok=True)
        storage = str(Path(storage).resolve())
    seed_everything(cfg.seed)
    # built here so a weights file need only exist on this machine, not on every Ray node
    pretrained = build_classifier(cfg.backbone, len(task.classes), cfg.weights)
    initial = pretrained.state_dict()
    with ray_session(address, need_cpus=workers, what=f"--workers {workers}"):
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={
                "cfg": cfg.model_dump(mode="json", exclude={"weights"}),
                "progressive": cfg.weights is not None and cfg.unfreeze_epochs + cfg.top_epochs > 0,
                "pretrained": cfg.weights is not None,
                "task": task.model_dump(mode="json"),
                "initial": ray.put(initial),
                "train": ray.put(train_set),
                "val": ray.put(val_set),
            },
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=RunConfig(
                name=run_name,
                storage_path=storage,
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                # Ray's stubs describe the v1 RunConfig; the v2 one that runs takes this.
                logging_config=LoggingConfig(log_level="WARNING"),  # type: ignore[call-arg]
            ),
        )
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            raise ModelError(failure_summary(exc)) from exc
        if result.checkpoint is None:
            raise ModelError("Ray training reported no checkpoint")
        with result.checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / BEST_WEIGHTS, map_location="cpu", weights_only=True)
            saved = json.loads((Path(folder) / HISTORY).read_text())
    history, best_epoch = saved["history"], saved["best_epoch"]
    for row in history:
        observer.epoch_done(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
    model = build_classifier(cfg.backbone, len(task.classes))
    model.load_state_dict(state)
    model.weights_record = pretrained.weights_record
    return calibrate(model, task, val_set, history, best_epoch, processing=cfg.threshold_processing)


def failure_summary(exc: BaseException) -> str:
    """One line for a failed Ray run: the workers' final exception line (Ray prints the rest)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return f"Ray training failed: {last} (worker tracebacks are printed above and in Ray's logs)"


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the in-process epoch loop on a shard, DDP-synchronised."""
    import ray
    import ray.train
    import ray.train.torch

    # Ray logs every report at INFO through a logger named after its file; keep workers to warnings
    logging.getLogger().setLevel(logging.WARNING)
    cfg = TrainConfig.model_validate(config["cfg"])
    task = task_from_dict(config["task"])
    train_set: ArraySet = ray.get(config["train"])
    val_set: ArraySet = ray.get(config["val"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    seed_everything(cfg.seed)
    device = ray.train.torch.get_device()
    classes = len(task.classes)
    network = build_classifier(cfg.backbone, classes)
    network.load_state_dict(ray.get(config["initial"]))
    # unfreezing toggles requires_grad after wrapping: DDP must tolerate parameters without grads
    progressive = bool(config["progressive"])
    model = ray.train.torch.prepare_model(
        network, parallel_strategy_kwargs={"find_unused_parameters": progressive}
    )
    module = cast(Classifier, getattr(model, "module", model))
    per_worker = math.ceil(cfg.batch_size / world)
    shard_len = len(shard_order(np.arange(len(train_set)), 0, world))
    opt = optimisation(
        cfg, model, train_set.targets, classes, math.ceil(shard_len / per_worker), device
    )
    order_rng = np.random.default_rng(cfg.seed)  # same shuffle on every rank
    augment_rng = np.random.default_rng([cfg.seed, rank])  # different augmentations per rank
    findings = [task.class_index(f) for f in task.findings]
    val_shard = np.arange(rank, len(val_set), world)
    stopper, history = EarlyStopping(cfg), []
    for epoch in range(1, cfg.epochs + 1):
        set_trainable(module, trainable_depth(cfg, epoch, pretrained=config["pretrained"]))
        order = shard_order(order_rng.permutation(len(train_set)), rank, world)
        loss = train_epoch(model, opt, train_set, order, per_worker, cfg, augment_rng, Silent())
        logits, _ = predict_arrays(module, val_set.images[val_shard])
        counts = confusion(logits, val_set.targets[val_shard], classes)
        counts, loss = _sum_over_workers(counts, loss * len(order), world, device)
        metrics = confusion_metrics(counts, findings)
        metrics.update(train_loss=loss / (len(order) * world), lr=opt.lr)
        history.append({"epoch": epoch, **metrics})
        stop = stopper.update(epoch, metrics, module)
        if rank == 0:  # the real stdout: Ray Train turns print() into its own INFO logging
            print(_epoch_line(epoch, cfg.epochs, metrics), file=sys.__stdout__, flush=True)
        _report(rank, epoch, metrics, stopper, history)
        if stop:
            break


def _sum_over_workers(
    counts: np.ndarray, loss_sum: float, world: int, device: torch.device
) -> tuple[np.ndarray, float]:
    if world == 1:
        return counts, loss_sum
    import torch.distributed as dist

    packed = torch.tensor([*counts.ravel().tolist(), loss_sum], dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    values = packed.cpu().numpy()
    return values[:-1].round().astype(np.int64).reshape(counts.shape), float(values[-1])


def _report(
    rank: int, epoch: int, metrics: dict[str, float], stopper: EarlyStopping, history: list
) -> None:
    """Every rank reports (it is a barrier); rank 0 attaches the checkpoint."""
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if rank == 0:
            torch.save(stopper.best_state, Path(folder) / BEST_WEIGHTS)
            (Path(folder) / HISTORY).write_text(
                json.dumps({"history": history, "best_epoch": stopper.best_epoch})
            )
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(
            {"epoch": epoch, "best_epoch": stopper.best_epoch, **metrics}, checkpoint=checkpoint
        )


def _epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    return (
        f"epoch {epoch}/{epochs}: loss {metrics['train_loss']:.3f}  val macro-F1 "
        f"{metrics['macro_f1']:.3f}  finding sensitivity {metrics['finding_sensitivity']:.3f}"
    )
