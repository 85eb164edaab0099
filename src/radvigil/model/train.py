"""The training loop: seeded, class-weighted, warmup + cosine, early stopping, calibration."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from sklearn.metrics import f1_score, recall_score
from torch import nn

from radvigil.evaluation.thresholds import threshold_for_sensitivity
from radvigil.model.augment import augment
from radvigil.model.calibrate import expected_calibration_error, fit_temperature, softmax
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet
from radvigil.model.network import Classifier, build_classifier
from radvigil.model.preprocess import normalise
from radvigil.task import Task

_VAL_KEYS = ("macro_f1", "accuracy", "finding_sensitivity")


class TrainObserver(Protocol):
    """Receives progress so the CLI can draw bars and the registry can log metrics."""

    def epoch_started(self, epoch: int, batches: int) -> None: ...
    def batch_done(self, loss: float) -> None: ...
    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None: ...


class _Silent:
    def epoch_started(self, epoch: int, batches: int) -> None:
        pass

    def batch_done(self, loss: float) -> None:
        pass

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


@dataclass
class TrainResult:
    """The best model with its calibration, thresholds and validation outputs."""

    model: Classifier
    history: list[dict[str, float]]
    best_epoch: int
    temperature: float
    thresholds: dict[str, float]
    val_probs: np.ndarray
    val_embeddings: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed torch and make CPU kernels deterministic so reruns give identical metrics."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def predict_arrays(
    model: Classifier, images: np.ndarray, batch: int = 64
) -> tuple[np.ndarray, ...]:
    """Logits and embeddings for uint8 N x S x S images, in eval mode."""
    model.eval()
    logits, embeddings = [], []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(normalise(images[start : start + batch])[:, None]).to(device)
            out, emb = model(x)
            logits.append(out.float().cpu().numpy())
            embeddings.append(emb.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(embeddings)


def train(
    cfg: TrainConfig,
    task: Task,
    train_set: ArraySet,
    val_set: ArraySet,
    observer: TrainObserver | None = None,
) -> TrainResult:
    """Train ``cfg.backbone`` for ``task``, keep the best epoch, calibrate and pick thresholds."""
    observer = observer or _Silent()
    seed_everything(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_classifier(cfg.backbone, len(task.classes), cfg.weights).to(device)
    counts = np.bincount(train_set.targets, minlength=len(task.classes)).astype(np.float64)
    weights = torch.tensor(
        len(train_set) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device), label_smoothing=cfg.label_smoothing)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, _warmup_cosine(cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)
    )
    amp = device.type == "cuda"
    rng = np.random.default_rng(cfg.seed)
    best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
    history: list[dict[str, float]] = []
    findings = [task.class_index(f) for f in task.findings]
    for epoch in range(1, cfg.epochs + 1):
        _set_frozen(model, frozen=cfg.weights is not None and epoch <= cfg.unfreeze_epochs)
        model.train()
        observer.epoch_started(epoch, steps_per_epoch)
        order = rng.permutation(len(train_set))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            batch = np.stack([augment(train_set.images[i], cfg.augment, rng) for i in idx])
            x = torch.from_numpy(normalise(batch)[:, None]).to(device)
            y = torch.from_numpy(train_set.targets[idx]).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits, _ = model(x)
                loss = loss_fn(logits.float(), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
            observer.batch_done(loss.item())
        val_logits, _ = predict_arrays(model, val_set.images)
        metrics = _epoch_metrics(val_logits, val_set.targets, findings)
        metrics["train_loss"] = total / len(train_set)
        metrics["lr"] = schedule.get_last_lr()[0]
        history.append({"epoch": epoch, **metrics})
        observer.epoch_done(epoch, metrics)
        score = metrics[cfg.early_stop_metric] + 1e-3 * metrics["macro_f1"]
        if score > best_score + 1e-6:
            best_score, best_state, best_epoch, stale = (
                score,
                copy.deepcopy(model.state_dict()),
                epoch,
                0,
            )
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return _calibrate(model, task, val_set, history, best_epoch)


def _calibrate(
    model: Classifier, task: Task, val_set: ArraySet, history: list, best_epoch: int
) -> TrainResult:
    logits, embeddings = predict_arrays(model, val_set.images)
    temperature = fit_temperature(logits, val_set.targets)
    raw, calibrated = softmax(logits), softmax(logits, temperature)
    thresholds = {}
    for finding in task.findings:
        k = task.class_index(finding)
        positive = (val_set.targets == k).astype(int)
        thresholds[finding] = threshold_for_sensitivity(
            positive, calibrated[:, k], task.target_for(finding)
        )
    metrics = {
        "val_ece_before": expected_calibration_error(raw, val_set.targets),
        "val_ece_after": expected_calibration_error(calibrated, val_set.targets),
        "temperature": temperature,
        **{f"val_{k}": v for k, v in history[best_epoch - 1].items() if k in _VAL_KEYS},
    }
    return TrainResult(
        model.cpu(), history, best_epoch, temperature, thresholds, calibrated, embeddings, metrics
    )


def _epoch_metrics(
    logits: np.ndarray, targets: np.ndarray, findings: list[int]
) -> dict[str, float]:
    predicted = logits.argmax(axis=1)
    recalls = recall_score(targets, predicted, labels=findings, average=None, zero_division=0)
    return {
        "macro_f1": float(f1_score(targets, predicted, average="macro", zero_division=0)),
        "accuracy": float((predicted == targets).mean()),
        "finding_sensitivity": float(np.mean(recalls)),
    }


def _set_frozen(model: Classifier, frozen: bool) -> None:
    head = {id(p) for p in model.head_parameters()}
    for p in model.parameters():
        p.requires_grad = (not frozen) or id(p) in head


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
