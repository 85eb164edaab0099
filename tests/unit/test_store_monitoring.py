"""Monitor results and alerts on SQLite: idempotent windows, cursors, history, alert life cycle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radvigil.errors import ConflictError, InputError, NotFoundError
from radvigil.loop.monitor_runs import acknowledge_alert, drift_streaks, resolve_alert
from radvigil.loop.monitor_windows import clean_json, to_reports
from radvigil.store import (
    AlertCreate,
    AlertStore,
    AuditLog,
    Database,
    MonitorResultCreate,
    MonitorResultStore,
    upgrade_database,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DETECTORS = ("image_stats", "mmd")


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def window(i: int, group: str = "all", drift: tuple[bool, ...] = (False, False), **kw):
    """The detector rows of the i-th window (one hour each) of model m/1."""
    return [
        MonitorResultCreate(
            model_name="m",
            model_version="1",
            window_kind="count",
            window_start=T0 + timedelta(hours=i),
            window_end=T0 + timedelta(hours=i, minutes=59),
            n=100,
            group=group,
            detector=name,
            statistic=2.0 if flagged else 0.5,
            threshold=1.0,
            threshold_source="calibrated",
            drift=flagged,
            details={"per_column": {"mean": 0.01}},
            **kw,
        )
        for name, flagged in zip(DETECTORS, drift, strict=True)
    ]


def test_a_window_is_stored_once_with_every_detector(db: Database) -> None:
    store = MonitorResultStore(db)
    first = store.add_window(window(0))
    assert [r.detector for r in first] == list(DETECTORS)
    assert first[0].window_end == T0 + timedelta(minutes=59)  # UTC-aware round trip
    assert first[0].details == {"per_column": {"mean": 0.01}}
    assert store.add_window(window(0)) == []  # a second runner stores nothing
    assert len(store.list(limit=None)) == 2
    assert [r.id for r in store.window_of(first[1].id)] == [r.id for r in first]
    with pytest.raises(NotFoundError, match="no monitor result with id 99"):
        store.get(99)


def test_cursors_history_and_filters(db: Database) -> None:
    store = MonitorResultStore(db)
    for i in range(4):
        store.add_window(window(i))
    store.add_window(window(1, group="site=A"))
    assert store.cursors("m", "1", "count") == {
        "all": T0 + timedelta(hours=3, minutes=59),
        "site=A": T0 + timedelta(hours=1, minutes=59),
    }
    assert store.cursors("m", "2", "count") == {}
    recent = store.recent("m", "1", "count", 2)
    ends = sorted({(r.group, r.window_end.hour) for r in recent})
    assert ends == [("all", 10), ("all", 11), ("site=A", 9)]
    reports = to_reports(recent)
    assert [(r.group, r.size, len(r.results)) for r in reports] == [
        ("site=A", 100, 2),
        (None, 100, 2),
        (None, 100, 2),
    ]
    assert [r.detector for r in store.list(detector="mmd", group="all", limit=2)] == ["mmd"] * 2
    newest = store.list(limit=1)[0]
    assert newest.window_end.hour == 11
    store.set_report_path([newest.id], "/tmp/report.html")
    assert store.get(newest.id).report_path == "/tmp/report.html"


def test_drift_streaks_count_the_newest_overall_windows(db: Database) -> None:
    store = MonitorResultStore(db)
    for i, flags in enumerate([(True, True), (False, True), (True, True), (True, True)]):
        store.add_window(window(i, drift=flags))
    store.add_window(window(9, group="site=A", drift=(False, False)))  # per-site: not counted
    assert drift_streaks(db, "m", "1") == {"image_stats": 2, "mmd": 4}
    assert drift_streaks(db, "m", "7") == {}


def alert(**changes: object) -> AlertCreate:
    values: dict[str, object] = {
        "model_name": "m",
        "model_version": "1",
        "rule": "mmd-drift",
        "detector": "mmd",
        "severity": "warning",
        "message": "mmd flagged drift in 2 consecutive window(s)",
        "statistic": 2.0,
        "threshold": 1.0,
    }
    return AlertCreate.model_validate(values | changes)


def test_alert_life_cycle_is_compare_and_set_and_audited(db: Database) -> None:
    audit = AuditLog(db)
    alerts = AlertStore(db, audit)
    rows = MonitorResultStore(db).add_window(window(0, drift=(True, True)))
    opened = alerts.open(alert(first_window=rows[1].id, last_window=rows[1].id))
    assert opened is not None and opened.state == "open" and opened.active
    assert alerts.open(alert()) is None  # one active alert per rule and group
    assert alerts.open(alert(group="site=B")) is not None
    assert alerts.count(state="open") == 2

    acked = acknowledge_alert(alerts, opened.id, "dr-lee")
    assert (acked.state, acked.acknowledged_by) == ("acknowledged", "dr-lee")
    with pytest.raises(InputError, match="is acknowledged; it cannot become acknowledged"):
        acknowledge_alert(alerts, opened.id, "dr-lee")
    with pytest.raises(ConflictError, match="is acknowledged now, not open"):
        alerts.transition(opened.id, "resolved", expected="open", actor="x")
    with pytest.raises(InputError, match="needs a reason"):
        resolve_alert(alerts, opened.id, "admin", "  ")
    done = resolve_alert(alerts, opened.id, "admin", "scanner recalibrated")
    assert (done.state, done.resolved_by, done.reason) == (
        "resolved",
        "admin",
        "scanner recalibrated",
    )
    with pytest.raises(InputError, match="is resolved"):
        resolve_alert(alerts, opened.id, "admin", "again")
    with pytest.raises(NotFoundError, match="no alert with id 42"):
        alerts.get(42)

    reopened = alerts.open(alert())  # resolved alerts no longer block the rule
    assert reopened is not None and reopened.id != opened.id
    assert [a.id for a in alerts.list(active=True)] == [reopened.id, opened.id + 1]
    assert [a.id for a in alerts.list(state="resolved")] == [opened.id]

    events = audit.list(object_type="alert", object_id=str(opened.id), newest_first=False)
    assert [(e.action, e.actor) for e in events] == [
        ("alert.open", "monitor"),
        ("alert.acknowledge", "dr-lee"),
        ("alert.resolve", "admin"),
    ]
    assert events[2].details["reason"] == "scanner recalibrated"
    assert events[2].model_version == "m/1"
    assert audit.verify().ok


def test_results_are_plain_json() -> None:
    import numpy as np

    cleaned = clean_json({"a": np.float32(1.5), "b": [np.nan, np.inf], "c": np.arange(2)})
    assert cleaned == {"a": 1.5, "b": [None, None], "c": [0, 1]}
    with pytest.raises(ValueError):
        MonitorResultCreate(**window(0)[0].model_dump() | {"statistic": float("nan")})


def test_a_window_report_is_kept_once_and_checked(db: Database) -> None:
    """Replicas share one report: the first writer wins, a second write changes nothing,
    a tampered copy is refused, and pruning the window deletes its report."""
    from sqlalchemy import delete, update

    from radvigil.errors import DataError
    from radvigil.store.tables import MonitorReportRow, MonitorResultRow

    store = MonitorResultStore(db)
    first = store.add_window(window(0))[0]
    assert store.load_report(first.id) is None
    store.save_report(first.id, b"<html>replica A</html>")
    store.save_report(first.id, b"<html>replica B</html>")
    assert store.load_report(first.id) == b"<html>replica A</html>"

    with db.transaction("tamper") as conn:
        conn.execute(update(MonitorReportRow).values(sha256="0" * 64))
    with pytest.raises(DataError, match="checksum"):
        store.load_report(first.id)

    with db.transaction("prune") as conn:
        conn.execute(delete(MonitorResultRow))
    with db.session("count") as session:
        assert session.query(MonitorReportRow).count() == 0
