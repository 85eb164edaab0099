"""``radvigil evaluate`` (report) and ``radvigil gate`` (verdict, exit 0 pass / 1 fail)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from radvigil.cli.admin import actor, deployments
from radvigil.cli.common import CONFIGS, console, track
from radvigil.cli.context import catalog, registry
from radvigil.config import get_settings
from radvigil.errors import ConfigError, NotFoundError
from radvigil.evaluation import load_criteria, verdict_table_rows
from radvigil.evaluation.report import summary_sentences
from radvigil.loop.evaluation import (
    evaluate_version,
    gate_version,
    load_problem_cases,
    record_gate,
    report_dir,
    write_and_log,
)
from radvigil.registry import Precision

REPO_GATES = CONFIGS / "gates.yaml"


PRECISION = typer.Option(
    "fp32", help="Graph to judge: fp32, or int8 (the static int8 QDQ graph of quantize: true)."
)


def _progress(items):
    return track(items, "scoring")


def evaluate_command(
    model: str = typer.Argument(..., help="NAME[@alias] or NAME/VERSION"),
    data: str = typer.Option("latest", help="Dataset version id, prefix, name or 'latest'."),
    split: str = typer.Option("test", help="Split to evaluate (train/val/test)."),
    out: Path | None = typer.Option(None, help="Report folder (default: under the home)."),
    precision: str = PRECISION,
) -> None:
    """Write the clinical evaluation report (HTML + JSON) and log it to the model's run."""
    reg = registry()
    loaded = reg.load(model).at_precision(_precision(precision))
    version = catalog().load(data)
    result, _ = evaluate_version(loaded, version, split, _progress)
    folder = out or report_dir(get_settings().reports_dir, loaded, version.id, split)
    html, js = write_and_log(result, None, folder, reg, loaded, version.id, split)
    console.print(
        f"[bold]{loaded.name}/{loaded.version}[/bold] ({loaded.precision}) on {version.id} "
        f"({split}), at the version's operating thresholds"
    )
    for line in summary_sentences(result):
        console.print(f"- {line}")
    console.print(f"report: {html}\njson:   {js}")


def gate_command(
    model: str = typer.Argument(..., help="Candidate: NAME[@alias] or NAME/VERSION"),
    data: str = typer.Option("latest", help="Hold-out dataset version."),
    split: str = typer.Option("test", help="Hold-out split."),
    against: str | None = typer.Option(
        "champion", help="Alias (or NAME/VERSION) to compare with; 'none' to skip."
    ),
    criteria: Path = typer.Option(REPO_GATES, help="Gate criteria YAML."),
    problem_cases: str | None = typer.Option(
        None, help="Dataset version of previously failed or drifted cases."
    ),
    precision: str = PRECISION,
) -> None:
    """Judge a candidate against acceptance criteria; exit 0 on pass, 1 on fail.

    With ``--precision int8`` the version's int8 graph is judged (at the same operating
    thresholds) and the verdict is recorded as its own tag, which int8 serving requires."""
    reg = registry()
    candidate = reg.load(model).at_precision(_precision(precision))
    champion = None
    if against and against.lower() != "none":
        ref = against if ("@" in against or "/" in against) else f"{candidate.name}@{against}"
        try:
            champion = reg.load(ref)
        except NotFoundError:
            console.print(f"no {ref} yet: comparisons with a champion are skipped")
    gate_criteria = load_criteria(criteria)
    verdict = gate_version(
        gate_criteria,
        candidate,
        champion,
        catalog().load(data),
        split,
        load_problem_cases(catalog(), problem_cases),
        _progress,
    )
    rows = verdict_table_rows(verdict)
    table = Table(
        title=f"gate verdict for {candidate.name}/{candidate.version} ({candidate.precision}): "
        f"{'PASS' if verdict.passed else 'FAIL'}"
    )
    columns = [c for c in (rows[0] if rows else {}) if c != "message"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in columns), style="red" if row["result"] == "FAIL" else None)
    console.print(table)
    for failure in verdict.failures:
        console.print(f"[red]FAIL[/red] {failure.message}")
    console.print(verdict.summary())
    record_gate(reg, candidate, verdict, gate_criteria, actor=actor(), deployments=deployments(reg))
    raise typer.Exit(0 if verdict.passed else 1)


def _precision(value: str) -> Precision:
    if value not in ("fp32", "int8"):
        raise ConfigError(f"--precision must be fp32 or int8, got {value!r}")
    return value  # type: ignore[return-value]
