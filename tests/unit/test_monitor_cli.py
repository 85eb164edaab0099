"""``radvigil monitor status|alerts|ack|resolve|report`` against a SQLite home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from typer.testing import CliRunner

from radvigil.cli import monitor
from radvigil.cli.common import ErrorHandlingGroup
from radvigil.config import Settings
from radvigil.store import (
    AlertCreate,
    AlertStore,
    AuditLog,
    Database,
    MonitorResultCreate,
    MonitorResultStore,
    upgrade_database,
)

app = typer.Typer(cls=ErrorHandlingGroup)
app.add_typer(monitor.app, name="monitor")
runner = CliRunner()
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result.stdout, result.stderr


def seed(home: Settings) -> tuple[Database, int]:
    db = Database.from_settings(home)
    upgrade_database(db)
    results = MonitorResultStore(db)
    for i, (stat, drift) in enumerate([(0.2, False), (3.5, True)]):
        rows = results.add_window(
            [
                MonitorResultCreate(
                    model_name=home.model_name,
                    model_version="3",
                    window_kind="count",
                    window_start=T0 + timedelta(hours=i),
                    window_end=T0 + timedelta(hours=i, minutes=30),
                    n=100,
                    detector="image_stats",
                    statistic=stat,
                    threshold=0.78,
                    drift=drift,
                ),
                MonitorResultCreate(
                    model_name=home.model_name,
                    model_version="3",
                    window_kind="count",
                    window_start=T0 + timedelta(hours=i),
                    window_end=T0 + timedelta(hours=i, minutes=30),
                    n=100,
                    detector="performance",
                    skipped="0 labelled cases; at least 30 needed",
                ),
            ]
        )
    report = home.reports_dir / "monitoring" / "window.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>evidently</html>")
    results.set_report_path([r.id for r in rows], str(report))
    alert = AlertStore(db, AuditLog(db)).open(
        AlertCreate(
            model_name=home.model_name,
            model_version="3",
            rule="image_stats-drift",
            detector="image_stats",
            message="image_stats flagged drift in 1 consecutive window(s)",
            last_window=rows[0].id,
        )
    )
    assert alert is not None
    return db, alert.id


def test_status_shows_the_newest_window_and_open_alerts(home: Settings) -> None:
    _, err = run("monitor", "status", code=2)
    assert "run `radvigil db upgrade`" in err
    upgrade_database(Database.from_settings(home))
    out, _ = run("monitor", "status")
    assert "no monitor results" in out
    seed(home)
    out, _ = run("monitor", "status")
    assert "chest-pneumonia/3" in out
    lines = [line for line in out.splitlines() if "image_stats" in line]
    assert any("3.5" in line and "DRIFT" in line and "0.78" in line for line in lines)
    assert "skipped: 0 labelled cases" in out
    assert "1 alert(s) not resolved" in out and "image_stats flagged drift" in out
    out, _ = run("monitor", "status", "--kind", "time")
    assert "DRIFT" not in out  # no time windows were stored
    _, err = run("monitor", "status", "--kind", "weekly", code=2)
    assert "unknown window kind 'weekly'" in err


def test_alert_commands_move_the_alert_and_audit_it(home: Settings) -> None:
    db, alert_id = seed(home)
    out, _ = run("monitor", "alerts", "--state", "open")
    assert "image_stats-drift" in out
    out, _ = run("monitor", "ack", str(alert_id))
    assert f"alert {alert_id} acknowledged by cli:" in out
    _, err = run("monitor", "ack", str(alert_id), code=2)
    assert "is acknowledged; it cannot become acknowledged" in err
    out, _ = run("monitor", "resolve", str(alert_id), "--reason", "detector retuned")
    assert "resolved by cli:" in out and "detector retuned" in out
    out, _ = run("monitor", "alerts", "--state", "open")
    assert "0 alert(s)" in out
    _, err = run("monitor", "alerts", "--state", "closed", code=2)
    assert "unknown alert state 'closed'" in err
    actions = [e.action for e in AuditLog(db).list(object_type="alert")]
    assert actions == ["alert.resolve", "alert.acknowledge", "alert.open"]


def test_report_prints_the_stored_path(home: Settings) -> None:
    seed(home)
    out, _ = run("monitor", "report", "--latest")
    assert out.strip().endswith("window.html")
    _, err = run("monitor", "report", code=2)
    assert "give either --result ID or --latest" in err
