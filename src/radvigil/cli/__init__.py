"""The ``radvigil`` command line: one Typer app with a sub-app per capability.

Commands are imported when they run, not at start-up: each pulls in heavy libraries (PyTorch,
MLflow, Ray, FastAPI), and ``radvigil --help`` should answer at once. The table below holds each
command's home and one-line help; a unit test keeps the help equal to the command's own.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any

import typer
from typer import _click as click  # Typer vendors Click: its groups take only its commands
from typer.core import TyperCommand

from radvigil.cli.common import ErrorHandlingGroup

# name -> (module, attribute, one-line help shown by `radvigil --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("radvigil.cli.data", "app", "Dataset versions: import, inspect, QC, shift."),
    "models": ("radvigil.cli.models", "app", "Registered model versions, aliases and lineage."),
    "train": (
        "radvigil.cli.training",
        "train_command",
        "Train a model on a dataset version and register it in MLflow with its lineage.",
    ),
    "tune": (
        "radvigil.cli.tuning",
        "tune_command",
        "Search hyperparameters with Ray Tune (Optuna TPE + ASHA) and write the best config.",
    ),
    "serve": (
        "radvigil.cli.serve",
        "serve_command",
        "Serve the champion of RADVIGIL_MODEL_NAME over HTTP (OpenAPI docs at /docs).",
    ),
    "evaluate": (
        "radvigil.cli.evaluation",
        "evaluate_command",
        "Write the clinical evaluation report (HTML + JSON) and log it to the model's run.",
    ),
    "gate": (
        "radvigil.cli.evaluation",
        "gate_command",
        "Judge a candidate against acceptance criteria; exit 0 on pass, 1 on fail.",
    ),
    "db": ("radvigil.cli.admin", "db_app", "The metadata database: migrate, inspect."),
    "keys": ("radvigil.cli.admin", "keys_app", "API keys: create, list, revoke."),
    "audit": ("radvigil.cli.admin", "audit_app", "The audit log: verify the chain, list."),
    "review": ("radvigil.cli.loop", "review_app", "The review queue: list and label cases."),
    "rollout": ("radvigil.cli.loop", "rollout_app", "Shadow, canary, promote, reject, rollback."),
    "loop": ("radvigil.cli.loop", "loop_app", "Retraining triggers."),
    "monitor": (
        "radvigil.cli.monitor",
        "app",
        "Drift monitors: run them, read results and alerts.",
    ),
    "notes": ("radvigil.cli.notes", "app", "Patient notes: generate, show, approve."),
    "stack": ("radvigil.cli.stack", "app", "The production topology on loopback."),
    "retrain": (
        "radvigil.cli.loop",
        "retrain_command",
        "Retrain on champion data + labelled drifters, gate, and alias challenger if it passes.",
    ),
    "dicom": (
        "radvigil.cli.dicom",
        "app",
        "PACS in and out: receive studies, deliver results.",
    ),
    "demo": (
        "radvigil.cli.demo",
        "demo_command",
        "Run the closed-loop demo on the bundled data (about 5-10 minutes on 2 CPU cores).",
    ),
}


def load_command(name: str) -> click.Command:
    """Import command ``name`` and build its Click command (a group for a sub-app)."""
    module, attribute, _ = COMMANDS[name]
    target: Any = getattr(import_module(module), attribute)
    if isinstance(target, typer.Typer):
        return typer.main.get_group(target)
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    return typer.main.get_command(single)


class LazyGroup(ErrorHandlingGroup):
    """Lists commands from :data:`COMMANDS` and imports one only when it is run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:  # listed in help: a stand-in with the one-line help
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][2])
        return self.commands[cmd_name]

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else None
        if name in COMMANDS and name not in self.commands:
            self.add_command(load_command(name), name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="radvigil: train, gate, serve and monitor chest X-ray classifiers, and close the loop.",
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    app()
