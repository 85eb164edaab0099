"""How ``radvigil demo`` prints the scenario: a rule per step, then its tables and verdicts."""

from __future__ import annotations

from collections.abc import Iterable

from rich.panel import Panel
from rich.table import Table

from radvigil.cli.common import console, track
from radvigil.config import Settings
from radvigil.data.qc_result import QCReport
from radvigil.demo.outcomes import (
    ActTwo,
    CanaryReport,
    Gated,
    LabelledMonitor,
    Metrics,
    ScenarioConfig,
    ScenarioResult,
    StepRecord,
    TrafficReport,
)
from radvigil.evaluation.result import Estimate
from radvigil.evaluation.verdict import Verdict, verdict_table_rows
from radvigil.loop.shadow import ShadowReport
from radvigil.loop.triggers import TriggerCheck


def print_intro(config: ScenarioConfig) -> None:
    console.print(
        Panel.fit(
            "radvigil closed-loop demo on real paediatric chest X-rays (Kermany, CC BY 4.0).\n"
            "Outputs are decision support. Clinician labels are simulated from ground truth.\n"
            f"Traffic: {config.normal_studies} studies of the champion's own acquisition batch "
            f"({config.normal_batch}), then {config.drift_studies} of the site's other batch "
            f"({config.drift_batch}).\n"
            f"Label budget: {config.label_budget} labels for site {config.site} "
            f"({config.label_policy} policy; {config.audit_share:.0%} of it a uniform audit "
            "sample reported apart).\n"
            f"Training config: {config.train_config.name}; gates: {config.criteria.name} "
            "(the production gates).",
            title="radvigil demo",
        )
    )


class RichObserver:
    """Prints each step of the scenario as it finishes."""

    def step_started(self, name: str) -> None:
        console.rule(f"[bold cyan]{name}")

    def progress(self, items: Iterable, description: str) -> Iterable:
        return track(items, description)

    def step_done(self, step: StepRecord, detail: object) -> None:
        show(detail)
        console.print(f"[green]✓[/green] {step.outcome}  ({step.seconds:.1f} s)")


def show(detail: object) -> None:
    """Print one step's typed detail."""
    if isinstance(detail, QCReport):
        console.print(
            f"QC: {len(detail.failing_paths())} failing, {len(detail.warned_paths())} with "
            f"warnings only, {detail.duplicate_counts('exact')[0]} exact-duplicate groups"
        )
    elif isinstance(detail, Gated):
        gated_tables(detail.verdict, f"version {detail.version}")
        if detail.note:
            console.print(detail.note)
    elif isinstance(detail, TrafficReport):
        for alert in detail.open_alerts:
            console.print(
                f"[bold red]ALERT[/bold red] {alert.severity} {alert.rule}: {alert.message}"
            )
        if detail.champion is not None:
            metrics_table([detail.champion], "the champion on the drift-era studies")
    elif isinstance(detail, TriggerCheck):
        for r in detail.results:
            console.print(f"  {'FIRES' if r.fired else 'quiet'}  {r.name}: {r.reason}")
    elif isinstance(detail, ShadowReport):
        console.print(
            f"agreement {_num(detail.agreement)} on {detail.pairs} studies; labelled accuracy "
            f"champion {_num(detail.champion_accuracy)} vs challenger "
            f"{_num(detail.challenger_accuracy)} ({detail.labelled} labelled)"
        )
    elif isinstance(detail, CanaryReport):
        console.print(f"served by: {detail.served_by}")
    elif isinstance(detail, list) and detail and isinstance(detail[0], Metrics):
        metrics_table(detail, "held-out drift-era studies (not used for training)")
    elif isinstance(detail, list) and detail and isinstance(detail[0], LabelledMonitor):
        table = Table("detector", "window", "labelled", "verdict", "detail")
        for m in detail:
            verdict = {None: "skipped", True: "[red]drop[/red]", False: "ok"}[m.drift]
            table.add_row(m.detector, m.window, str(m.n_labelled), verdict, m.message)
        console.print(table)
    elif isinstance(detail, ActTwo):
        gated_tables(detail.bad.verdict, f"the bad challenger {detail.bad.version}")


def gated_tables(verdict: Verdict, who: str) -> None:
    """The gating rows as a verdict table, then the advisory robustness rows as their own."""
    shown = list(zip(verdict.rows, verdict_table_rows(verdict), strict=True))
    verdict_table([text for row, text in shown if row.gating], f"gates of {who}")
    advisory = [text for row, text in shown if not row.gating]
    if advisory:
        robustness_table(advisory, f"{who} under mild processing (advisory, not gating)")


def verdict_table(rows: list[dict[str, str]], title: str) -> None:
    table = Table("result", "gate", "finding", "value", "95% CI", "rule", "room", title=title)
    for row in rows:
        style = {"FAIL": "red", "PASS": "green"}.get(row["result"], "yellow")
        table.add_row(
            f"[{style}]{row['result']}[/{style}]",
            row["gate"],
            row["finding"] or row["subgroup"],
            row["value"],
            row["95% CI"],
            row["rule"],
            row["room"],
        )
    console.print(table)


def robustness_table(rows: list[dict[str, str]], title: str) -> None:
    """Robustness rows: which perturbation, which metric, perturbed minus clean (a verdict
    table would hide the perturbation, which is the point of the row)."""
    table = Table("result", "perturbation", "metric", "change", "95% CI", "room", title=title)
    for row in rows:
        style = {"FAIL": "red", "PASS": "green"}.get(row["result"].split()[0], "yellow")
        where, _, seed = row["subgroup"].partition("; ")  # the seed is in the step's summary
        table.add_row(
            f"[{style}]{row['result']}[/{style}]",
            where + (")" if seed else ""),
            row["metric"],
            row["value"],
            row["95% CI"],
            row["room"],
        )
    console.print(table)


def metrics_table(rows: list[Metrics], title: str) -> None:
    table = Table("model", "version", "n", "sensitivity", "specificity", "AUC", "ECE", title=title)
    for m in rows:
        table.add_row(
            m.label,
            m.version,
            str(m.n),
            _ci(m.sensitivity),
            _ci(m.specificity),
            _ci(m.auc),
            _ci(m.ece),
        )
    console.print(table)


def print_summary(result: ScenarioResult, settings: Settings, seconds: float) -> None:
    table = Table(title="radvigil demo summary")
    table.add_column("step")
    table.add_column("outcome")
    table.add_column("time", justify="right")
    for step in result.steps:
        table.add_row(step.name, step.outcome, f"{step.seconds:.1f} s")
    console.print(table)
    verdicts = Table("verdict", "value", title="verdicts (the same on every run)")
    for key, value in result.verdicts.items():
        verdicts.add_row(key, str(value))
    console.print(verdicts)
    home = settings.home_dir
    console.print(
        f"whole demo: {seconds / 60:.1f} min\n"
        f"lineage: radvigil models show {settings.model_name}@champion\n"
        "dashboard: run `radvigil serve` and open http://127.0.0.1:8000/dashboard\n"
        f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} "
        "--port 5000, then http://127.0.0.1:5000\n"
        "API keys for the dashboard: radvigil keys create --name me --role admin"
    )


def _ci(e: Estimate) -> str:
    if e.value is None:
        return "n/a"
    if e.low is None or e.high is None:
        return f"{e.value:.3f}"
    return f"{e.value:.3f} ({e.low:.3f}-{e.high:.3f})"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
