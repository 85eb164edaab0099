"""Traffic over time: stored predictions counted per time bucket, with latency percentiles.

The database counts and takes percentiles per bucket (:mod:`radvigil.store.aggregates`):
buckets of whole hours from the hourly rollups (whole buckets, latency percentiles from a
histogram with 5 % bins), finer ones from the rows (exact, from ``since``). :func:`fill` lays
the non-empty buckets on the full range. The number of buckets is capped
(:data:`MAX_BUCKETS`), so one request costs at most a bounded answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel

from radvigil.errors import InputError
from radvigil.store import PredictionStore
from radvigil.store.aggregates import (
    BucketStats,
    first_answered,
    rollup_traffic,
    traffic_buckets,
)

# Bucket widths a chart can label plainly, from one second to one day.
NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 6 * 3600, 86400)
MAX_BUCKETS = 5000  # the cost cap: a 31-day range at 10-minute buckets is 4,464


class TrafficBucket(BaseModel):
    """Predictions that started in ``[start, start + bucket)``."""

    start: datetime
    count: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class TrafficOut(BaseModel):
    bucket_seconds: int
    since: datetime
    until: datetime
    total: int
    buckets: list[TrafficBucket]


def bucket_for(span: timedelta, target: int = 30) -> int:
    """The smallest nice bucket width (seconds) that cuts ``span`` into at most ``target``."""
    seconds = max(span.total_seconds(), 1.0)
    return next((b for b in NICE_BUCKETS if seconds / b <= target), NICE_BUCKETS[-1])


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = moment.astimezone(UTC).timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def fill(
    found: Sequence[BucketStats], *, since: datetime, until: datetime, bucket_seconds: int
) -> list[TrafficBucket]:
    """Every bucket from ``since`` (floored to the width) to ``until``, oldest first: the
    database's non-empty buckets (indexed from that floor) with empty ones between them.

    Raises:
        InputError: when the range holds more than :data:`MAX_BUCKETS` buckets (the cost cap).
    """
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be positive")
    start = _floor(since, bucket_seconds)
    n = buckets_between(start, until, bucket_seconds)
    by_index = {b.index: b for b in found}
    buckets = []
    for i in range(n):
        stats = by_index.get(i)
        buckets.append(
            TrafficBucket(
                start=start + timedelta(seconds=i * bucket_seconds),
                count=stats.count if stats else 0,
                latency_p50_ms=_ms(stats.p50) if stats else None,
                latency_p95_ms=_ms(stats.p95) if stats else None,
                latency_p99_ms=_ms(stats.p99) if stats else None,
            )
        )
    return buckets


def _ms(value: float) -> float | None:
    """A latency for the answer: 2 decimals, None when unknown (no histogram for the bucket)."""
    return None if np.isnan(value) else round(value, 2)


def buckets_between(start: datetime, until: datetime, bucket_seconds: int) -> int:
    """How many buckets ``[start, until)`` holds; refuses more than :data:`MAX_BUCKETS`."""
    n = max(1, int(np.ceil((until - start).total_seconds() / bucket_seconds)))
    if n > MAX_BUCKETS:
        raise InputError(
            f"{n:,} buckets of {bucket_seconds} s asked for; at most {MAX_BUCKETS:,}: "
            "choose a wider bucket_seconds or fewer hours"
        )
    return n


def traffic(
    predictions: PredictionStore,
    *,
    hours: float = 24.0,
    bucket_seconds: int | None = None,
    now: datetime | None = None,
) -> TrafficOut:
    """Answered (not shadow) predictions of the last ``hours``, bucketed by the database.

    Without ``bucket_seconds`` the range starts at the first prediction found (not ``hours``
    ago) and the width is chosen to give about 30 buckets, so a quiet service still shows a
    readable chart. The answer's size is capped (:data:`MAX_BUCKETS`) before any query runs.
    """
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=hours)
    if bucket_seconds is None:
        since = first_answered(predictions.db, since=since, until=until) or since
        bucket_seconds = bucket_for(until - since)
    start = _floor(since, bucket_seconds)
    buckets_between(start, until, bucket_seconds)  # refuse before querying
    if bucket_seconds % 3600 == 0:  # whole hours: the rollups, whole buckets from ``start``
        found = rollup_traffic(
            predictions.db, start=start, until=until, bucket_hours=bucket_seconds // 3600
        )
    else:
        found = traffic_buckets(
            predictions.db, since=since, until=until, origin=start, bucket_seconds=bucket_seconds
        )
    buckets = fill(found, since=since, until=until, bucket_seconds=bucket_seconds)
    return TrafficOut(
        bucket_seconds=bucket_seconds,
        since=buckets[0].start,
        until=until,
        total=sum(b.count for b in buckets),
        buckets=buckets,
    )
