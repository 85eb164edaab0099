"""Monitor results and alerts on the real PostgreSQL: unique windows, JSONB, the partial index."""

from __future__ import annotations

import pytest

from radvigil.store import AlertStore, AuditLog, Database, MonitorResultStore, upgrade_database
from tests.unit.test_store_monitoring import T0, alert, window

pytestmark = pytest.mark.integration


def test_monitoring_stores_on_postgres(pg_url: str) -> None:
    db = Database(pg_url)
    upgrade_database(db)
    results = MonitorResultStore(db)
    rows = results.add_window(window(0, drift=(True, False)))
    assert len(rows) == 2 and results.add_window(window(0)) == []
    results.add_window(window(1, group="site=A"))
    assert results.cursors("m", "1", "count")["all"] == rows[0].window_end
    assert results.get(rows[0].id).details == {"per_column": {"mean": 0.01}}
    assert min(r.window_start for r in results.recent("m", "1", "count", 1)) == T0

    alerts = AlertStore(db, AuditLog(db))
    first = alerts.open(alert(first_window=rows[0].id, last_window=rows[0].id))
    assert first is not None and alerts.open(alert()) is None
    alerts.transition(first.id, "resolved", expected="open", actor="admin", reason="ok")
    assert alerts.open(alert()) is not None
    assert AuditLog(db).verify().ok
    db.dispose()
