"""The scale paths on the real PostgreSQL: traffic percentiles by ``percentile_cont`` (and
from the hourly rollup), key
pages of the review queue, the labelled outcomes, and a prune with its archive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete as sa_delete

from radvigil.loop.actions import label_case
from radvigil.service.sinks import AuditedPredictions
from radvigil.service.traffic import traffic
from radvigil.store import (
    AuditLog,
    Database,
    FeedbackStore,
    PredictionStore,
    ReviewQueue,
    upgrade_database,
)
from radvigil.store.aggregates import labelled_outcomes
from radvigil.store.retention import prune, verify_archive
from radvigil.store.tables import PredictionRow
from tests.unit.test_store_predictions import record

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_traffic_key_pages_outcomes_and_prune_on_postgres(pg_url: str, tmp_path: Path) -> None:
    db = Database(pg_url)
    upgrade_database(db)
    store = PredictionStore(db, keep_review_images=True)
    audit = AuditLog(db)
    rng = np.random.default_rng(4)
    latencies = rng.gamma(3.0, 10.0, 60).round(3)
    scores = [
        None if i % 7 == 0 else float(v) for i, v in enumerate(rng.choice([0.2, 0.5, 0.9], 60))
    ]
    AuditedPredictions(store, audit).add_many(
        [
            record(
                0,
                id=f"r{i:02d}",
                created_at=NOW - timedelta(days=40) + timedelta(days=i // 2, minutes=i),
                latency_ms=float(latencies[i]),
                ood_score=scores[i],
                confidence=0.3,
                routed_to_review=True,
            )
            for i in range(60)
        ]
    )
    out = traffic(store, hours=24 * 31, bucket_seconds=86400, now=NOW)
    assert out.total == sum(1 for i in range(60) if i // 2 >= 9)  # the last 31 days
    day = next(b for b in out.buckets if b.count == 2)
    index = (day.start - (NOW - timedelta(days=40))).days * 2
    # whole-day buckets come from the hourly rollup: percentiles within the 5 % bins
    assert day.latency_p95_ms == pytest.approx(
        np.percentile(latencies[index : index + 2], 95), rel=0.026
    )
    half_hours = traffic(store, hours=24 * 31, bucket_seconds=1800, now=NOW)
    assert half_hours.total == out.total
    pair = next(b for b in half_hours.buckets if b.count == 2)  # from the rows: exact
    index = round((pair.start - (NOW - timedelta(days=40))).total_seconds() / 86400) * 2
    assert pair.latency_p95_ms == pytest.approx(
        np.percentile(latencies[index : index + 2], 95), abs=0.01
    )

    queue = ReviewQueue(db)
    whole = [r.id for r in queue.pending(limit=100)]
    paged, after = [], None
    while True:
        page = queue.pending(limit=7, after=after)
        paged += [r.id for r in page]
        if len(page) < 7:
            break
        after = page[-1].id
    assert paged == whole and len(whole) == 60

    feedback = FeedbackStore(db)
    for pid in ("r00", "r01", "r59"):
        label_case(store, feedback, audit, pid, "VIRAL", "dr-ana")
    cases = labelled_outcomes(db, model_version="3")
    assert sum(c.count for c in cases) == 3

    cut = NOW - timedelta(days=20)
    kept = store.list(since=cut, limit=None)
    report = prune(db, cut, tmp_path / "archive", batch_size=4, audit=audit, actor="test")
    assert report.deleted["predictions"] == 40 - 2  # two old ones are labelled
    assert store.list(since=cut, limit=None) == kept
    assert verify_archive(tmp_path / "archive") == []
    assert audit.verify(full=False).ok  # the incremental check from the signed checkpoint
    assert audit.verify(full=True).ok  # every missing audited prediction is the pruned set
    with db.session("delete behind the log") as session:  # a kept one deleted by hand
        session.execute(sa_delete(PredictionRow).where(PredictionRow.id == kept[0].id))
    broken = audit.verify(full=True)
    assert not broken.ok and "deleted behind the log" in broken.reason
    db.dispose()
