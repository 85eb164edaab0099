"""Key pagination (``after=KEY``) on SQLite: pages in a row equal one long page, with no
item twice or missing, for the review queue, monitor results, alerts and the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from radvigil.errors import NotFoundError
from radvigil.store import (
    AlertCreate,
    AlertStore,
    AuditLog,
    Database,
    MonitorResultCreate,
    MonitorResultStore,
    PredictionStore,
    ReviewQueue,
    upgrade_database,
)
from tests.unit.test_store_predictions import record

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def _walk(page: Callable[[Any, int], Sequence[Any]], size: int) -> list[Any]:
    """Every item, fetched ``size`` at a time, each page after the last one's key."""
    items: list[Any] = []
    after = None
    while True:
        found = page(after, size)
        items += found
        if len(found) < size:
            return items
        after = found[-1].id


def test_review_queue_pages_follow_the_queue_order_with_ties_and_missing_scores(db) -> None:
    scores = [None, 0.9, 0.9, 0.2, None, 0.5, 0.9, 0.2, 0.7, None, 0.1]
    PredictionStore(db).add_many(
        [
            record(i % 3, id=f"r{i:02d}", ood_score=s, confidence=0.3 + 0.01 * (i % 2))
            for i, s in enumerate(scores)
        ]
    )
    queue = ReviewQueue(db)
    whole = queue.pending(limit=100)
    assert len(whole) == len(scores)
    assert [r.ood_score for r in whole[:3]] == [0.9, 0.9, 0.9]
    assert [r.ood_score for r in whole[-3:]] == [None, None, None]  # unscored last
    for size in (1, 3, 4):
        paged = _walk(lambda after, n: queue.pending(limit=n, after=after), size)
        assert [r.id for r in paged] == [r.id for r in whole]
    with pytest.raises(NotFoundError, match="to page after"):
        queue.pending(after="nope")


def test_monitor_results_and_alerts_page_by_key_newest_first(db) -> None:
    results = MonitorResultStore(db)
    for w in range(7):  # two detectors per window: ties on window_end, broken by id
        end = T0 + timedelta(hours=w % 4, minutes=w)
        results.add_window(
            [
                MonitorResultCreate(
                    model_name="m",
                    model_version="1",
                    window_kind="count",
                    window_start=end - timedelta(minutes=30),
                    window_end=end,
                    n=50,
                    detector=name,
                )
                for name in ("mmd", "image_stats")
            ]
        )
    whole = results.list(limit=None)
    paged = _walk(lambda after, n: results.list(limit=n, after=after), 3)
    assert [r.id for r in paged] == [r.id for r in whole] and len(whole) == 14
    oldest = _walk(lambda after, n: results.list(limit=n, after=after, newest_first=False), 5)
    assert [r.id for r in oldest] == [r.id for r in reversed(whole)]

    alerts = AlertStore(db)
    for i in range(5):
        alerts.open(
            AlertCreate(
                model_name="m", model_version="1", rule=f"r{i}", detector="mmd", message="x"
            )
        )
    every = alerts.list(limit=None)
    assert [a.id for a in _walk(lambda after, n: alerts.list(limit=n, after=after), 2)] == [
        a.id for a in every
    ]


def test_audit_records_page_by_id_with_their_filters(db: Database) -> None:
    log = AuditLog(db)
    for i in range(9):
        log.append(actor="a", action="even" if i % 2 == 0 else "odd", object_type="t")
    every = log.list(limit=None, action="even")
    assert [
        e.id for e in _walk(lambda after, n: log.list(limit=n, after=after, action="even"), 2)
    ] == [e.id for e in every]
    oldest = _walk(lambda after, n: log.list(limit=n, after=after, newest_first=False), 4)
    assert [e.id for e in oldest] == list(range(1, 10))
