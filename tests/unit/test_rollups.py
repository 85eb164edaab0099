"""The rollup tables on SQLite: what the writer and the label path keep equals the aggregate
of the raw rows (``rebuild``), and the traffic view reads them (counts exact, percentiles
within the 5 % bins). ``tests/integration/test_rollups_postgres.py`` runs the same on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from radvigil.service.traffic import traffic
from radvigil.store import (
    Database,
    FeedbackCreate,
    FeedbackStore,
    PredictionStore,
    upgrade_database,
)
from radvigil.store.aggregates import labelled_outcomes
from radvigil.store.rollups import HOURS, LABELS, LATENCY, bin_value, latency_bin, rebuild
from tests.unit.test_store_predictions import record

NOW = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'rollups.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def snapshot(db: Database) -> dict[str, set[tuple[Any, ...]]]:
    """Every rollup row with a non-zero count, by table."""
    with db.transaction("read rollups") as conn:
        return {
            table.name: {tuple(row) for row in conn.execute(select(table)) if row.n}
            for table in (HOURS, LATENCY, LABELS)
        }


def write_history(db: Database, seed: int = 0) -> list[float]:
    """Predictions over three days in batches (replays, a shadow, no site), labels with
    corrections; returns the answered latencies of the newest hour of the history."""
    rng = np.random.default_rng(seed)
    store = PredictionStore(db)
    feedback = FeedbackStore(db)
    n = 300
    times = [
        NOW - timedelta(hours=72) + timedelta(minutes=float(m))
        for m in np.sort(rng.uniform(0, 72 * 60, n))
    ]
    records = [
        record(
            0,
            id=f"p{i:03d}",
            created_at=times[i],
            latency_ms=float(rng.gamma(3.0, 10.0)),
            site=[None, "site-a", "site-b"][i % 3],
            predicted_class=["NORMAL", "BACTERIAL", "VIRAL"][int(rng.integers(3))],
            routed_to_review=bool(i % 4 == 0),
            model_version="3" if i > n // 2 else "2",
            served_by="shadow" if i % 10 == 9 else "champion",
            shadow_of=f"p{i - 1:03d}" if i % 10 == 9 else None,
        )
        for i in range(n)
    ]
    for start in range(0, n, 64):
        assert store.add_many(records[start : start + 64]) == len(records[start : start + 64])
    assert store.add_many(records[:100]) == 0  # a replayed spool counts nothing twice
    for i in range(0, n, 3):
        feedback.add(FeedbackCreate(prediction_id=f"p{i:03d}", label="NORMAL"), reviewer="dr")
    for i in range(0, n, 6):  # corrections move a case between cells
        feedback.add(FeedbackCreate(prediction_id=f"p{i:03d}", label="VIRAL"), reviewer="dr")
    for i in range(0, n, 12):  # ...and a correction back
        feedback.add(FeedbackCreate(prediction_id=f"p{i:03d}", label="NORMAL"), reviewer="dr")
    last_hour = NOW - timedelta(hours=1)
    return [r.latency_ms for r in records if r.created_at >= last_hour and r.served_by != "shadow"]


def check_rollups_match(db: Database) -> None:
    """What the write paths kept equals the SQL aggregate of the raw rows."""
    kept = snapshot(db)
    assert all(kept.values())
    with db.transaction("rebuild rollups") as conn:
        rebuild(conn)
    assert snapshot(db) == kept


def test_rollups_kept_by_the_writer_equal_the_raw_aggregate(db: Database) -> None:
    write_history(db)
    check_rollups_match(db)


def check_traffic_reads_the_rollup(db: Database, last_hour: list[float]) -> None:
    """Hourly traffic: counts exact, p50/p95/p99 within half a 5 % bin of NumPy's."""
    store = PredictionStore(db)
    out = traffic(store, hours=72, bucket_seconds=3600, now=NOW)
    assert out.total == store.count(since=NOW - timedelta(hours=72), served_by="champion")
    newest = out.buckets[-1]
    assert newest.count == len(last_hour)
    for got, q in zip(
        (newest.latency_p50_ms, newest.latency_p95_ms, newest.latency_p99_ms),
        (50, 95, 99),
        strict=True,
    ):
        assert got == pytest.approx(float(np.percentile(last_hour, q)), rel=0.026)
    day = traffic(store, hours=72, bucket_seconds=86400, now=NOW)
    assert [b.count for b in day.buckets] == [
        sum(b.count for b in out.buckets[d * 24 : (d + 1) * 24]) for d in range(3)
    ]


def test_hourly_traffic_reads_the_rollup(db: Database) -> None:
    check_traffic_reads_the_rollup(db, write_history(db))


def test_latency_bins_hold_their_values_and_a_label_correction_moves_one_count(
    db: Database,
) -> None:
    for ms in (0.0, 0.5, 7.3, 41.5, 2_000.0):
        index = latency_bin(ms)
        assert bin_value(index) / 1.05**0.5 <= max(ms, 0.01) < bin_value(index) * 1.05**0.5
    PredictionStore(db).add(record(0, id="a", created_at=NOW, predicted_class="VIRAL"))
    feedback = FeedbackStore(db)
    feedback.add(FeedbackCreate(prediction_id="a", label="NORMAL"), reviewer="dr")
    feedback.add(FeedbackCreate(prediction_id="a", label="VIRAL"), reviewer="dr")
    assert [(c.predicted, c.label, c.count) for c in labelled_outcomes(db)] == [
        ("VIRAL", "VIRAL", 1)
    ]
