"""Traffic over time: stored predictions counted per time bucket, with latency percentiles.

:func:`aggregate` is a plain function over (time, latency) pairs; the route and the dashboard
feed it from :class:`~radvigil.store.PredictionStore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel

from radvigil.store import PredictionStore

# Bucket widths a chart can label plainly, from one second to one day.
NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 1800, 3600, 6 * 3600, 86400)


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


def aggregate(
    times: Sequence[datetime],
    latencies_ms: Sequence[float],
    *,
    since: datetime,
    until: datetime,
    bucket_seconds: int,
) -> list[TrafficBucket]:
    """Count and latency percentiles per bucket, empty buckets included, oldest first.

    Args:
        times: when each prediction was made (timezone-aware).
        latencies_ms: its latency, aligned with ``times``.
        since: start of the first bucket (floored to the bucket width).
        until: end of the range (exclusive).
        bucket_seconds: bucket width.
    """
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be positive")
    start = _floor(since, bucket_seconds)
    n = max(1, int(np.ceil((until - start).total_seconds() / bucket_seconds)))
    per: list[list[float]] = [[] for _ in range(n)]
    for moment, latency in zip(times, latencies_ms, strict=True):
        index = int((moment - start).total_seconds() // bucket_seconds)
        if 0 <= index < n:
            per[index].append(float(latency))
    buckets = []
    for i, values in enumerate(per):
        p50 = p95 = p99 = None
        if values:
            p50, p95, p99 = (round(float(v), 2) for v in np.percentile(values, [50, 95, 99]))
        buckets.append(
            TrafficBucket(
                start=start + timedelta(seconds=i * bucket_seconds),
                count=len(values),
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                latency_p99_ms=p99,
            )
        )
    return buckets


def traffic(
    predictions: PredictionStore,
    *,
    hours: float = 24.0,
    bucket_seconds: int | None = None,
    now: datetime | None = None,
    limit: int = 50_000,
) -> TrafficOut:
    """Answered (not shadow) predictions of the last ``hours``, bucketed.

    Without ``bucket_seconds`` the range starts at the first prediction found (not ``hours``
    ago) and the width is chosen to give about 30 buckets, so a quiet service still shows a
    readable chart.
    """
    until = now or datetime.now(UTC)
    since = until - timedelta(hours=hours)
    records = [
        r
        for r in predictions.list(since=since, until=until, limit=limit)
        if r.served_by != "shadow"
    ]
    if bucket_seconds is None:
        if records:
            since = min(r.created_at for r in records)
        bucket_seconds = bucket_for(until - since)
    buckets = aggregate(
        [r.created_at for r in records],
        [r.latency_ms for r in records],
        since=since,
        until=until,
        bucket_seconds=bucket_seconds,
    )
    return TrafficOut(
        bucket_seconds=bucket_seconds,
        since=buckets[0].start,
        until=until,
        total=len(records),
        buckets=buckets,
    )
