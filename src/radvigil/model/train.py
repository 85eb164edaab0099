"""The training loop: seeded, class-weighted, warmup + cosine, early stopping, calibration.

The pieces (optimisation set-up, one epoch, metrics from a confusion matrix, early stopping,
calibration) are shared by the in-process loop here and the Ray Train workers in
:mod:`radvigil.model.distributed`, so both backends train the same way.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from radvigil.data.shifts import apply_shift, mild_suite
from radvigil.metrics import confusion_matrix, expected_calibration_error, threshold_for_sensitivity
from radvigil.model.augment import augment, processing_change
from radvigil.model.calibrate import fit_temperature, softmax
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet
from radvigil.model.network import Classifier, build_classifier, channels_last
from radvigil.model.preprocess import normalise
from radvigil.task import Task

_VAL_KEYS = ("macro_f1", "accuracy", "finding_sensitivity")


class TrainObserver(Protocol):
    """Receives progress so the CLI can draw bars and the registry can log metrics."""

    def epoch_started(self, epoch: int, batches: int) -> None: ...
    def batch_done(self, loss: float) -> None: ...
    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None: ...


class Silent:
    """An observer that ignores everything (workers, tuning trials, tests)."""

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
    # per site, thresholds fitted on that site's own labelled cases (site calibration only)
    site_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Optimisation:
    """Loss, optimiser and per-step learning-rate schedule for one training run."""

    loss_fn: nn.Module
    optimiser: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    device: torch.device

    @property
    def lr(self) -> float:
        """The head's learning rate (the largest, with discriminative rates)."""
        return float(max(self.schedule.get_last_lr()))


class EarlyStopping:
    """Keeps the best epoch's weights and says when ``patience`` epochs brought nothing."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.metric, self.patience = cfg.early_stop_metric, cfg.patience
        self.best_score, self.best_epoch, self.stale = -np.inf, 0, 0
        self.best_state: dict[str, Any] | None = None

    def update(self, epoch: int, metrics: dict[str, float], model: nn.Module) -> bool:
        """Record ``epoch``; True when training should stop."""
        score = metrics[self.metric] + 1e-3 * metrics["macro_f1"]  # macro-F1 breaks ties
        if score > self.best_score + 1e-6:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return self.stale >= self.patience


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
    if not logits:
        return np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(embeddings)


def optimisation(
    cfg: TrainConfig,
    model: nn.Module,
    targets: np.ndarray,
    num_classes: int,
    steps_per_epoch: int,
    device: torch.device,
) -> Optimisation:
    """Class-weighted label-smoothed loss, AdamW and warmup + cosine over all steps.

    With ``cfg.lr_decay`` < 1 each backbone stage below the head learns at ``lr_decay`` times the
    rate of the stage above it (discriminative learning rates, Howard & Ruder 2018).
    """
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weights = torch.tensor(
        len(targets) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device), label_smoothing=cfg.label_smoothing)
    groups = [
        {"params": params, "lr": cfg.lr * cfg.lr_decay**depth}
        for depth, params in enumerate(_classifier(model).depth_groups())
    ]
    optimiser = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, _warmup_cosine(cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)
    )
    return Optimisation(loss_fn, optimiser, schedule, device)


def train_epoch(
    model: nn.Module,
    opt: Optimisation,
    data: ArraySet,
    order: np.ndarray,
    batch_size: int,
    cfg: TrainConfig,
    rng: np.random.Generator,
    observer: TrainObserver,
) -> float:
    """One pass over ``data`` in ``order`` (augmented, clipped); returns the mean loss."""
    model.train()
    amp = opt.device.type == "cuda"
    total = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = np.stack([augment(data.images[i], cfg.augment, rng) for i in idx])
        if cfg.consistency > 0:  # drawn only when on: older configs replay exactly
            batch = np.concatenate([batch, [processing_change(x, rng) for x in batch]])
        x = torch.from_numpy(normalise(batch)[:, None]).to(opt.device)
        y = torch.from_numpy(data.targets[idx]).to(opt.device)
        with torch.autocast(device_type=opt.device.type, dtype=torch.bfloat16, enabled=amp):
            logits, _ = model(x)
            loss = training_loss(opt.loss_fn, logits.float(), y, cfg.consistency)
        opt.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.optimiser.step()
        opt.schedule.step()
        total += loss.item() * len(idx)
        observer.batch_done(loss.item())
    return total / max(1, len(order))


def training_loss(
    loss_fn: nn.Module, logits: torch.Tensor, y: torch.Tensor, consistency: float
) -> torch.Tensor:
    """The classification loss on the clean views; with ``consistency``, the batch's second half
    is the processed views, and their logits' mean squared distance from the clean ones is added.

    Squared logits, not a divergence of probabilities: the operating threshold sits near 0.04,
    where a healthy film's probability doubling is a small divergence but a wrong call.
    """
    if consistency <= 0:
        return loss_fn(logits, y)
    clean, processed = logits[: len(y)], logits[len(y) :]
    invariance = (processed - clean).pow(2).sum(dim=1).mean() / logits.shape[1]
    return loss_fn(clean, y) + consistency * invariance


def confusion(logits: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, argmax class) pairs, rows = truth."""
    predicted = logits.argmax(axis=1) if len(logits) else np.empty(0, np.int64)
    return confusion_matrix(targets, predicted, num_classes)


def confusion_metrics(matrix: np.ndarray, findings: list[int]) -> dict[str, float]:
    """Macro-F1 (over classes seen), accuracy and mean finding sensitivity from a confusion matrix.

    Computed from counts rather than per-item labels so distributed workers can sum their
    matrices and all reach the same numbers (and the same early-stopping decision).
    """
    matrix = matrix.astype(np.float64)
    true_pos = np.diag(matrix)
    actual, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    seen = (actual + predicted) > 0
    denominator = actual + predicted
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    return {
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "accuracy": float(true_pos.sum() / max(1.0, matrix.sum())),
        "finding_sensitivity": float(recall[findings].mean()) if findings else 0.0,
    }


def trainable_depth(cfg: TrainConfig, epoch: int, pretrained: bool) -> int | None:
    """How many depth groups train in ``epoch`` (None = all): head, then top blocks, then all.

    Progressive unfreezing applies only when starting from pretrained weights.
    """
    if not pretrained:
        return None
    if epoch <= cfg.unfreeze_epochs:
        return 1
    if epoch <= cfg.unfreeze_epochs + cfg.top_epochs:
        return 1 + cfg.top_groups
    return None


def set_trainable(model: Classifier, depth: int | None) -> None:
    """Train only the first ``depth`` groups from the head (all when None); freeze the rest."""
    groups = model.depth_groups()
    open_ids = {id(p) for group in groups[:depth] for p in group}
    for p in model.parameters():
        p.requires_grad = depth is None or id(p) in open_ids


def train(
    cfg: TrainConfig,
    task: Task,
    train_set: ArraySet,
    val_set: ArraySet,
    observer: TrainObserver | None = None,
) -> TrainResult:
    """Train ``cfg.backbone`` for ``task`` in this process, keep the best epoch, calibrate."""
    observer = observer or Silent()
    seed_everything(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classes = len(task.classes)
    model = channels_last(build_classifier(cfg.backbone, classes, cfg.weights).to(device))
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    opt = optimisation(cfg, model, train_set.targets, classes, steps_per_epoch, device)
    rng = np.random.default_rng(cfg.seed)
    stopper = EarlyStopping(cfg)
    recent: deque[dict[str, torch.Tensor]] = deque(maxlen=cfg.average_epochs)
    if cfg.average_start and cfg.average_epochs > 1:
        recent.append(copy.deepcopy(model.state_dict()))
    history: list[dict[str, float]] = []
    findings = [task.class_index(f) for f in task.findings]
    for epoch in range(1, cfg.epochs + 1):
        set_trainable(model, trainable_depth(cfg, epoch, pretrained=cfg.weights is not None))
        observer.epoch_started(epoch, steps_per_epoch)
        order = rng.permutation(len(train_set))
        loss = train_epoch(model, opt, train_set, order, cfg.batch_size, cfg, rng, observer)
        val_logits, _ = predict_arrays(model, val_set.images)
        metrics = confusion_metrics(confusion(val_logits, val_set.targets, classes), findings)
        metrics.update(train_loss=loss, lr=opt.lr)
        history.append({"epoch": epoch, **metrics})
        observer.epoch_done(epoch, metrics)
        if cfg.average_epochs > 1:
            recent.append(copy.deepcopy(model.state_dict()))
        if stopper.update(epoch, metrics, model):
            break
    if len(recent) > 1:
        model.load_state_dict(average_states(list(recent)))
        return calibrate(
            model, task, val_set, history, len(history), processing=cfg.threshold_processing
        )
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
    return calibrate(
        model, task, val_set, history, stopper.best_epoch, processing=cfg.threshold_processing
    )


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of several epochs' weights (a "model soup" of one run, Wortsman et
    al. 2022): floating tensors, batch-norm statistics included, are averaged; integer
    buffers (batch counters) keep the last epoch's value."""
    last = states[-1]
    return {
        key: torch.stack([s[key] for s in states]).mean(dim=0)
        if last[key].is_floating_point()
        else last[key]
        for key in last
    }


# A source pins its own screening threshold only with enough positives for the target to mean
# something: at 0.98 and 50 positives one miss is allowed; with fewer, the target demands every
# positive and one atypical case would drag the threshold down (the pooled one still applies).
MIN_GROUP_POSITIVES = 50


def calibrate(
    model: Classifier,
    task: Task,
    val_set: ArraySet,
    history: list,
    best_epoch: int,
    *,
    processing: bool = False,
) -> TrainResult:
    """Temperature scaling and per-finding thresholds on validation for the chosen weights.

    With ``processing``, each threshold must also reach its target on validation under every
    mild change of the processing suite (``threshold_processing``); the clean-only thresholds
    are kept in the metrics so the margin's price can be read.
    """
    logits, embeddings = predict_arrays(model, val_set.images)
    temperature = fit_temperature(logits, val_set.targets)
    raw, calibrated = softmax(logits), softmax(logits, temperature)
    thresholds = operating_thresholds(calibrated, task, val_set)
    margin: dict[str, float] = {}
    if processing:
        perturbed = [
            softmax(predict_arrays(model, images)[0], temperature)
            for images in processed_copies(val_set.images)
        ]
        margin = {f"val_clean_threshold_{f}": t for f, t in thresholds.items()}
        thresholds = operating_thresholds(calibrated, task, val_set, perturbed)
    metrics = {
        "val_ece_before": worst_finding_ece(raw, val_set.targets, task),
        "val_ece_after": worst_finding_ece(calibrated, val_set.targets, task),
        "temperature": temperature,
        **{f"val_{k}": v for k, v in history[best_epoch - 1].items() if k in _VAL_KEYS},
        **margin,
    }
    return TrainResult(
        model.cpu(), history, best_epoch, temperature, thresholds, calibrated, embeddings, metrics
    )


def operating_thresholds(
    calibrated: np.ndarray,
    task: Task,
    val_set: ArraySet,
    perturbed: Sequence[np.ndarray] = (),
) -> dict[str, float]:
    """Per-finding thresholds reaching the target sensitivity on validation, on every source
    with enough positives and on each ``perturbed`` copy of the whole set (the same rows,
    processed), whichever asks the lowest (trained and imported versions get theirs here)."""
    groups = calibration_groups(val_set.frame)
    thresholds = {}
    for finding in task.findings:
        k = task.class_index(finding)
        positive = (val_set.targets == k).astype(int)
        pooled, *sources = groups
        eligible = [pooled] + [
            rows for rows in sources if MIN_GROUP_POSITIVES <= positive[rows].sum() < rows.sum()
        ]
        target = task.target_for(finding)
        thresholds[finding] = min(
            [
                threshold_for_sensitivity(positive[rows], calibrated[rows, k], target)
                for rows in eligible
            ]
            + [threshold_for_sensitivity(positive, probs[:, k], target) for probs in perturbed]
        )
    return thresholds


def processed_copies(images: np.ndarray, seed: int = 0) -> Iterator[np.ndarray]:
    """``images`` (N x S x S uint8) under each mild shift of the processing suite, seeded per
    image, one copy at a time. Applied at the model's input size, which is harsher for noise
    and compression than the same change on the full-size film (the robustness gate's)."""
    for shift in mild_suite():
        yield np.stack([apply_shift(x, shift, (seed, i)) for i, x in enumerate(images)])


def worst_finding_ece(probs: np.ndarray, targets: np.ndarray, task: Task) -> float:
    """The largest per-finding ECE: the gate's definition (10 equal-width bins), so training
    logs the number the calibration gate will judge."""
    ones = np.ones((1, len(targets)))
    columns = [task.class_index(f) for f in task.findings]
    return max(
        float(expected_calibration_error((targets == k).astype(float), probs[:, k], ones)[0])
        for k in columns
    )


def calibration_groups(frame: pd.DataFrame) -> list[np.ndarray]:
    """Row masks of each data source in a validation frame (one mask when there is one source).

    The screening threshold must reach its sensitivity target on every source's validation
    cases, not only on their pool: when a site's own labelled cases join validation, a pooled
    threshold would follow the larger development set and miss the site's positives.
    """
    column = frame.get("source_dataset")
    everything = np.ones(len(frame), dtype=bool)
    if column is None or column.nunique() < 2:
        return [everything]
    return [everything] + [(column == source).to_numpy() for source in sorted(column.unique())]


def _classifier(model: nn.Module) -> Classifier:
    """The Classifier inside a DDP wrapper (or the model itself)."""
    return cast(Classifier, getattr(model, "module", model))


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
