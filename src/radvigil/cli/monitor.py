"""``radvigil monitor``: run the drift monitors on the logged predictions, read results and alerts.

Alert changes made here are audited with actor ``cli:<os user>``; the monitors' own changes
with actor ``monitor``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime

import typer
from rich.table import Table

from radvigil.cli.admin import actor, database
from radvigil.cli.common import console
from radvigil.cli.context import registry
from radvigil.config import get_settings
from radvigil.errors import DataError, InputError, NotFoundError, StoreError
from radvigil.loop.monitor_runs import (
    MonitoringRun,
    MonitoringStores,
    acknowledge_alert,
    ensure_report,
    latest_results,
    resolve_alert,
    stored_report,
)
from radvigil.loop.worker import SETTLE_S, MonitoringWorker
from radvigil.monitoring import ReferenceProfile, load_monitor_config
from radvigil.store import AlertPublic, MonitorResultPublic

app = typer.Typer(no_args_is_help=True, help="Drift monitors: run them, read results and alerts.")
MODEL = typer.Option(None, "--model", help="Registered model (default: RADVIGIL_MODEL_NAME).")
KIND = typer.Option("count", "--kind", help="count windows (windows.size) or time windows.")


def _stores() -> MonitoringStores:
    return MonitoringStores.from_db(database())


def _profile(ref: str) -> tuple[str, ReferenceProfile]:
    loaded = registry().load(ref)
    if loaded.profile_dir is None:
        raise DataError(f"{loaded.name}/{loaded.version} has no reference profile to monitor with")
    return loaded.version, ReferenceProfile.from_path(loaded.profile_dir)


def _check_kind(kind: str) -> None:
    if kind not in ("count", "time"):
        raise InputError(f"unknown window kind {kind!r}; use count or time")


def _time(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _verdict(row: MonitorResultPublic) -> str:
    if row.skipped:
        return f"[dim]skipped: {row.skipped}[/dim]"
    if row.vetoed:
        return f"[yellow]held back: {row.vetoed}[/yellow]"
    return "[bold red]DRIFT[/bold red]" if row.drift else "[green]ok[/green]"


def _alerts_table(alerts: list[AlertPublic], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "opened", "state", "severity", "rule", "group", "version", "message"):
        table.add_column(column)
    for a in alerts:
        table.add_row(
            str(a.id),
            _time(a.created_at),
            a.state,
            a.severity,
            a.rule,
            a.group,
            a.model_version,
            a.message,
        )
    return table


def _worker(model: str | None, kind: str, reports: bool, settle: float) -> MonitoringWorker:
    _check_kind(kind)
    settings = get_settings()
    return MonitoringWorker(
        database(),
        registry(),
        model or settings.model_name,
        load_monitor_config(settings.monitoring_config),
        kind=kind,  # type: ignore[arg-type]
        reports_dir=settings.reports_dir / "monitoring" if reports else None,
        webhook=settings.alert_webhook,
        settle_s=settle,
    )


REPORTS = typer.Option(
    False,
    help="Write each new window's Evidently HTML report now (default: on demand, by "
    "`monitor report` or the report URL).",
)
SETTLE = typer.Option(
    SETTLE_S, min=0, help="Leave predictions younger than this (seconds) for the next run."
)


@app.command("run")
def monitor_run(
    model: str | None = MODEL,
    kind: str = KIND,
    reports: bool = REPORTS,
    settle: float = SETTLE,
    wait: float = typer.Option(
        0.0, min=0, help="Wait this long (s) for another worker's run to finish."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    """Evaluate the champion's new complete windows from the database now (once)."""
    worker = _worker(model, kind, reports, settle)
    run = worker.run_once(wait_s=wait)
    if run is None:
        raise StoreError(f"another monitoring worker holds {worker.lease}; try again later")
    if as_json:
        typer.echo(run.model_dump_json())
        return
    _print_run(run, worker.config.windows.size)


@app.command("worker")
def monitor_worker(
    model: str | None = MODEL,
    kind: str = KIND,
    every: float = typer.Option(
        None, "--every", min=1, help="Seconds between runs (RADVIGIL_MONITOR_INTERVAL_SECONDS)."
    ),
    reports: bool = REPORTS,
    settle: float = SETTLE,
    nice: int = typer.Option(
        10,
        min=0,
        max=19,
        help="Lower this process's CPU priority by N, so serving wins when they share cores.",
    ),
    idle: bool = typer.Option(
        True,
        "--idle/--no-idle",
        help="On Linux, run under SCHED_IDLE: only on CPU time nothing else wants.",
    ),
) -> None:
    """Run the monitors every N seconds until stopped (SIGTERM/Ctrl-C): the production worker.

    Any number may run against one database; a lease in the database lets one evaluate a
    window and the others skip that round.
    """
    if nice:
        _lower_priority(nice)
    if idle:
        _idle_priority()
    worker = _worker(model, kind, reports, settle)
    interval = every or get_settings().monitor_interval_seconds or 60.0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    console.print(
        f"monitoring worker {worker.holder}: {worker.model_name} every {interval:g} s "
        f"(windows of {worker.config.windows.size})"
    )

    def report(run: MonitoringRun | None) -> None:
        if run is None:
            console.print("another worker holds the lease; skipped")
        elif run.windows or run.opened or run.resolved:
            _print_run(run, worker.config.windows.size)

    worker.run_forever(interval, stop, report, lambda exc: console.print(f"run failed: {exc}"))
    console.print("monitoring worker stopped")


def _each_thread(apply: Callable[[int], None]) -> None:
    """``apply`` to every thread id of this process (Linux; just the process id elsewhere),
    skipping threads that exit meanwhile: priorities are per thread on Linux."""
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [os.getpid()]
    for tid in threads:
        with contextlib.suppress(OSError):
            apply(tid)


def _lower_priority(nice: int) -> None:
    """Nice every thread of this process by ``nice``: Linux's ``nice()`` only moves the caller."""
    _each_thread(
        lambda tid: os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice
        )
    )


def _idle_priority() -> None:
    """SCHED_IDLE for every thread of this process, and so for every thread started later.

    Nice 10 still takes about a tenth of a contended core from serving (CFS weight 110 vs 1024):
    enough to double serving p99 on 2 cores while a window is evaluated. SCHED_IDLE's weight is
    3. The policy is per thread on Linux, and OpenBLAS and jemalloc start their threads when
    numpy is imported, before this runs: setting only the main thread left the BLAS pool at
    normal priority: serving p99 moved 1.68x with the worker running against 1.21x for an
    idle-class busy loop; with every thread idle, 0.86x and 1.36x against 0.80x and 1.35x in two
    runs (bench/serve_load.py). Not on macOS/Windows, or when a container's seccomp profile
    refuses it: nice stays.
    """
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as exc:
        console.print(f"SCHED_IDLE refused ({exc}); running at nice only")
        return
    _each_thread(lambda tid: os.sched_setscheduler(tid, policy, os.sched_param(0)))


def _print_run(run: MonitoringRun, size: int) -> None:
    table = Table(title=f"new windows of {run.model_name}/{run.model_version}")
    for column in ("window", "group", "n", "drifted"):
        table.add_column(column)
    for w in run.windows:
        table.add_row(w.window, w.group or "all", str(w.size), ", ".join(w.drifted) or "none")
    console.print(table)
    if not run.windows:
        console.print(f"no new complete window yet (windows of {size})")
    for alert in run.opened:
        console.print(f"[bold red]ALERT {alert.id}[/bold red] {alert.severity}: {alert.message}")
    for alert in run.resolved:
        console.print(f"[green]resolved {alert.id}[/green] {alert.rule} on {alert.group}")


@app.command("status")
def monitor_status(
    model: str | None = MODEL,
    version: str | None = typer.Option(
        None, help="Model version (default: the version of the newest stored result)."
    ),
    kind: str = KIND,
) -> None:
    """The newest window of every detector and group, and the alerts not yet resolved."""
    _check_kind(kind)
    name = model or get_settings().model_name
    stores = _stores()
    if version is None:
        newest = stores.results.list(model_name=name, limit=1)
        if not newest:
            console.print(f"no monitor results for {name} yet; run `radvigil monitor run`")
            return
        version = newest[0].model_version
    table = Table(title=f"{name}/{version}: newest window per detector and group")
    for column in ("group", "detector", "window end", "n", "statistic", "threshold", "verdict"):
        table.add_column(column)
    for row in sorted(
        latest_results(stores.results, name, version, kind),  # type: ignore[arg-type]
        key=lambda r: (r.group != "all", r.group),
    ):
        table.add_row(
            row.group,
            row.detector,
            _time(row.window_end),
            str(row.n),
            _number(row.statistic),
            _number(row.threshold),
            _verdict(row),
        )
    console.print(table)
    active = stores.alerts.list(model_name=name, active=True, limit=None)
    console.print(_alerts_table(active, f"{len(active)} alert(s) not resolved"))


@app.command("alerts")
def monitor_alerts(
    state: str | None = typer.Option(None, help="open, acknowledged or resolved (default: all)."),
    limit: int = typer.Option(50, min=1, help="How many, newest first."),
) -> None:
    """List alerts."""
    if state not in (None, "open", "acknowledged", "resolved"):
        raise InputError(f"unknown alert state {state!r}; use open, acknowledged or resolved")
    alerts = _stores().alerts.list(state=state, limit=limit)  # type: ignore[arg-type]
    console.print(_alerts_table(alerts, f"{len(alerts)} alert(s)"))


@app.command("ack")
def monitor_ack(alert_id: int = typer.Argument(..., help="Alert id.")) -> None:
    """Acknowledge an open alert (audited)."""
    alert = acknowledge_alert(_stores().alerts, alert_id, actor())
    console.print(f"alert {alert.id} acknowledged by {alert.acknowledged_by}")


@app.command("resolve")
def monitor_resolve(
    alert_id: int = typer.Argument(..., help="Alert id."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why (recorded in the audit log)."),
) -> None:
    """Resolve an open or acknowledged alert (audited)."""
    alert = resolve_alert(_stores().alerts, alert_id, actor(), reason)
    console.print(f"alert {alert.id} resolved by {alert.resolved_by}: {alert.reason}")


@app.command("report")
def monitor_report(
    result: int | None = typer.Option(None, "--result", help="A monitor result id."),
    latest: bool = typer.Option(False, "--latest", help="The newest window's report."),
    model: str | None = MODEL,
) -> None:
    """Print the path of a window's Evidently HTML report, writing it first if it is missing."""
    if (result is None) == (not latest):
        raise InputError("give either --result ID or --latest")
    settings = get_settings()
    stores = _stores()
    if result is None:
        newest = stores.results.list(model_name=model or settings.model_name, limit=1)
        if not newest:
            raise NotFoundError("no monitor results yet; run `radvigil monitor run`")
        result = newest[0].id
    folder = settings.reports_dir / "monitoring"
    found = stored_report(stores, result, folder)
    if found is not None:
        typer.echo(str(found))
        return
    row = stores.results.get(result)
    _, profile = _profile(f"{row.model_name}/{row.model_version}")
    typer.echo(str(ensure_report(stores, profile, result, folder)))


def _register_export() -> None:
    """``monitor export-phoenix`` lives in its own module (cli/phoenix.py)."""
    from radvigil.cli.phoenix import export_phoenix

    app.command("export-phoenix")(export_phoenix)


_register_export()
