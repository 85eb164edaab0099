"""``radvigil train``: train, calibrate, export and register a model version."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from radvigil.cli.admin import actor, cli_recorder, deployments
from radvigil.cli.common import console, err_console, track
from radvigil.cli.context import catalog, registry
from radvigil.config import get_settings
from radvigil.errors import ConfigError, ForbiddenError
from radvigil.loop.governance import GATED_ALIASES, move_alias
from radvigil.loop.training import RayBackend, qc_checked_version, run_training
from radvigil.model.config import load_config


class RichObserver:
    """A progress bar per epoch plus a line of validation metrics when it ends."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def epoch_started(self, epoch: int, batches: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch}", total=batches, loss=float("nan"))

    def batch_done(self, loss: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, loss=loss)

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        self.progress.console.print(
            f"epoch {epoch}: loss {metrics['train_loss']:.3f}  val macro-F1 "
            f"{metrics['macro_f1']:.3f}  finding sensitivity {metrics['finding_sensitivity']:.3f}"
        )


def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="Training YAML (configs/fast.yaml)."),
    data: str = typer.Option("latest", help="Dataset version id, prefix, name or 'latest'."),
    alias: str | None = typer.Option(
        None,
        help="Set this alias on the new version; champion/challenger need a passing gate, so "
        "only with --force and --alias-reason (audited).",
    ),
    force: bool = typer.Option(False, "--force", help="Set a gated --alias without a gate."),
    alias_reason: str | None = typer.Option(None, help="Why (needed with --force)."),
    backend: str = typer.Option(
        "local", help="'local' (this process) or 'ray' (Ray Train, data-parallel workers)."
    ),
    workers: int = typer.Option(2, min=1, help="Ray Train workers (--backend ray)."),
    ray_address: str | None = typer.Option(
        None,
        help="Ray cluster head (HOST:PORT) or auto; default RAY_ADDRESS, else a local Ray "
        "instance on this machine.",
    ),
    gpu: bool = typer.Option(False, "--gpu", help="One GPU per Ray worker (--backend ray)."),
    exclude_failing: bool = typer.Option(
        False,
        "--exclude-failing",
        help="Train on a child version without the images that fail QC (saved first); "
        "without it a version with failing images is refused.",
    ),
) -> None:
    """Train a model on a dataset version and register it in MLflow with its lineage."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend must be 'local' or 'ray', not {backend!r}")
    if alias in GATED_ALIASES and not force:  # refuse before training, not after
        raise ForbiddenError(
            f"--alias {alias} needs a passing gate: train, run `radvigil gate`, then "
            "`radvigil models alias`; or add --force --alias-reason '...' (audited)"
        )
    cfg = load_config(config)
    data = qc_checked_version(catalog(), data, exclude_failing=exclude_failing)
    reg = registry()
    ray = None
    if backend == "ray":
        storage = get_settings().resolved_ray_storage
        ray = RayBackend(workers=workers, storage=storage, address=ray_address, use_gpu=gpu)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as progress:
        outcome = run_training(
            cfg,
            data,
            catalog(),
            reg,
            # Ray workers print each epoch themselves; a local run draws a bar per epoch
            observer=RichObserver(progress) if ray is None else None,
            progress=lambda items: track(items, "loading images"),
            ray=ray,
        )
    if alias:
        move_alias(
            reg,
            outcome.name,
            alias,
            outcome.version,
            actor=actor(),
            reason=alias_reason or "set at training",
            record=cli_recorder(outcome.name),
            force=force,
            deployments=deployments(reg),
        )
    card = outcome.card
    table = Table(title=f"registered {outcome.name} version {outcome.version}")
    table.add_column("item")
    table.add_column("value")
    table.add_row("run", outcome.run_id)
    table.add_row("backend", "local" if ray is None else f"ray, {workers} workers")
    table.add_row("data version", card.training_data_version)
    table.add_row("best epoch", str(outcome.result.best_epoch) if outcome.result else "-")
    table.add_row("temperature", f"{card.temperature:.3f}")
    table.add_row(
        "ECE before -> after",
        f"{card.metrics['val_ece_before']:.3f} -> {card.metrics['val_ece_after']:.3f}",
    )
    for finding, threshold in card.thresholds.items():
        table.add_row(f"threshold {finding}", f"{threshold:.4f}")
    table.add_row("ONNX parity (max abs diff)", f"{card.metrics['onnx_parity_max_abs_diff']:.2e}")
    table.add_row("val macro-F1", f"{card.metrics['val_macro_f1']:.3f}")
    console.print(table)
    typer.echo(f"{outcome.name}/{outcome.version}")
