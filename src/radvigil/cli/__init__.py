"""The ``radvigil`` command line: one Typer app with a sub-app per capability."""

from __future__ import annotations

import logging

import typer

from radvigil.cli import admin, data, loop, models, monitor, notes
from radvigil.cli.common import ErrorHandlingGroup
from radvigil.cli.demo import demo_command
from radvigil.cli.evaluation import evaluate_command, gate_command
from radvigil.cli.serve import serve_command
from radvigil.cli.training import train_command
from radvigil.cli.tuning import tune_command

app = typer.Typer(
    cls=ErrorHandlingGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="radvigil: train, gate, serve and monitor chest X-ray classifiers, and close the loop.",
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.command("train")(train_command)
app.command("tune")(tune_command)
app.command("serve")(serve_command)
app.command("evaluate")(evaluate_command)
app.command("gate")(gate_command)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.audit_app, name="audit")
app.add_typer(loop.review_app, name="review")
app.add_typer(loop.rollout_app, name="rollout")
app.add_typer(loop.loop_app, name="loop")
app.add_typer(monitor.app, name="monitor")
app.add_typer(notes.app, name="notes")
app.command("retrain")(loop.retrain_command)
app.command("demo")(demo_command)


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
