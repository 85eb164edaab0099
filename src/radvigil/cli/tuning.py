"""``radvigil tune``: Ray Tune + Optuna search over a training config, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from radvigil.cli.common import CONFIGS, console, counting_progress, track
from radvigil.cli.context import catalog, registry
from radvigil.config import get_settings
from radvigil.loop.tuning import run_tuning
from radvigil.model.config import load_config
from radvigil.model.tuning import load_space


def tune_command(
    config: Path = typer.Option(..., "--config", "-c", help="Base training YAML to tune."),
    trials: int = typer.Option(8, "--trials", "-n", min=1, help="Trials Optuna suggests."),
    space: Path = typer.Option(
        CONFIGS / "tune.yaml", help="Search-space YAML (fields, distributions, metric)."
    ),
    data: str = typer.Option("latest", help="Dataset version id, prefix, name or 'latest'."),
    output: Path | None = typer.Option(
        None, help="Where to write the best config (default: RADVIGIL_HOME/tuning/<run id>.yaml)."
    ),
    cpus_per_trial: float = typer.Option(
        1.0, min=0.1, help="CPUs each trial reserves (trials run side by side on the rest)."
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster head (HOST:PORT) or auto; default RAY_ADDRESS or a local instance."
    ),
) -> None:
    """Search hyperparameters with Ray Tune (Optuna TPE + ASHA) and write the best config."""
    base = load_config(config)
    search = load_space(space, base)
    settings = get_settings()
    with counting_progress() as bar:
        done = bar.add_task("trials", total=trials)
        outcome = run_tuning(
            base,
            search,
            data,
            catalog(),
            registry(),
            trials=trials,
            storage=settings.resolved_ray_storage,
            config_dir=settings.home_dir / "tuning",
            output=output,
            address=ray_address,
            cpus_per_trial=cpus_per_trial,
            progress=lambda items: track(items, "loading images"),
            on_trial_done=lambda: bar.advance(done),
        )
    result = outcome.result
    names = sorted(search.params)
    table = Table(title=f"{len(result.trials)} trials, best by validation {result.metric}")
    for column in ("trial", *names, "epochs", result.metric, "status"):
        table.add_column(column, overflow="fold")
    ranked = sorted(result.trials, key=lambda t: -t.best if t.best == t.best else float("inf"))
    for trial in ranked:
        marker = " *" if trial is result.best else ""
        table.add_row(
            trial.trial_id + marker,
            *(_show(trial.overrides.get(name)) for name in names),
            str(trial.epochs),
            f"{trial.best:.4f}",
            trial.status,
        )
    console.print(table)
    console.print(f"MLflow run {outcome.run_id}; best config written to {outcome.config_path}")
    console.print(f"train it: radvigil train --config {outcome.config_path}")


def _show(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
