"""Aggregates computed by the database: traffic buckets and labelled outcomes.

Pages and query routes ask for counts and percentiles, not rows, so their cost is the size of
the answer, not of the history. Buckets of whole hours and labelled outcomes are read from the
rollup tables (``store/rollups.py``); finer traffic buckets from the rows. For those,
PostgreSQL computes latency percentiles with ``percentile_cont``; SQLite, which lacks it,
with window functions and the same linear interpolation (NumPy's default), so both backends
answer alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import TextClause, bindparam, func, literal_column, select, text

from radvigil.store.db import Database
from radvigil.store.rollups import LATENCY_RATIO, hour_of
from radvigil.store.tables import (
    FeedbackRow,
    LabelDayRow,
    LatencyHourRow,
    PredictionHourRow,
    PredictionRow,
    UTCDateTime,
)

PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class BucketStats:
    """One non-empty traffic bucket: its index from the origin, count and latency percentiles."""

    index: int
    count: int
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True)
class OutcomeCount:
    """How many labelled cases had this (model version, predicted class, label), per bucket."""

    model_version: str
    predicted: str
    label: str
    bucket: int
    count: int


def _epoch(db: Database, column: str) -> str:
    """SQL for a timestamp column as epoch seconds (fractional)."""
    if db.backend == "postgresql":
        return f"extract(epoch from {column})"
    return f"((julianday({column}) - 2440587.5) * 86400.0)"


def _bucket(db: Database, column: str) -> str:
    """SQL for the bucket index of a timestamp from ``:origin`` in ``:width`` seconds (rows
    are never before the origin, so SQLite's truncating cast is a floor)."""
    offset = f"({_epoch(db, column)} - :origin) / :width"
    return f"floor({offset})" if db.backend == "postgresql" else f"CAST({offset} AS INTEGER)"


def traffic_buckets(
    db: Database, *, since: datetime, until: datetime, origin: datetime, bucket_seconds: int
) -> list[BucketStats]:
    """Answered (not shadow) predictions in ``[since, until)`` per bucket of ``bucket_seconds``
    counted from ``origin``: count and latency p50/p95/p99, non-empty buckets only."""
    bucket = _bucket(db, "created_at")
    params: dict[str, Any] = {
        "since": since,
        "until": until,
        "origin": origin.timestamp(),
        "width": float(bucket_seconds),
    }
    where = "served_by != 'shadow' AND created_at >= :since AND created_at < :until"
    if db.backend == "postgresql":
        sql = (
            f"SELECT {bucket} AS b, count(*), "
            "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) "
            f"FROM predictions WHERE {where} GROUP BY b ORDER BY b"
        )
        with db.session("aggregate traffic") as session:
            rows = session.execute(_text(sql), params).all()
        return [BucketStats(int(b), int(n), *map(float, p)) for b, n, p in rows]
    picks = ", ".join(
        f"sum(CASE WHEN r = CAST({p} * (n - 1) AS INTEGER) "
        f"THEN latency_ms * (1 - ({p} * (n - 1) - CAST({p} * (n - 1) AS INTEGER))) "
        f"WHEN r = CAST({p} * (n - 1) AS INTEGER) + 1 "
        f"THEN latency_ms * ({p} * (n - 1) - CAST({p} * (n - 1) AS INTEGER)) ELSE 0 END)"
        for p in PERCENTILES
    )
    sql = (
        "WITH ranked AS (SELECT b, latency_ms, "
        "row_number() OVER (PARTITION BY b ORDER BY latency_ms) - 1 AS r, "
        "count(*) OVER (PARTITION BY b) AS n "
        f"FROM (SELECT {bucket} AS b, latency_ms FROM predictions WHERE {where})) "
        f"SELECT b, max(n), {picks} FROM ranked GROUP BY b ORDER BY b"
    )
    with db.session("aggregate traffic") as session:
        rows = session.execute(_text(sql), params).all()
    return [BucketStats(int(b), int(n), float(a), float(c), float(d)) for b, n, a, c, d in rows]


def first_answered(db: Database, *, since: datetime, until: datetime) -> datetime | None:
    """When the first answered prediction in ``[since, until)`` was made (None: none was)."""
    t = PredictionRow
    query = select(func.min(t.created_at)).where(
        t.served_by != "shadow", t.created_at >= since, t.created_at < until
    )
    with db.session("find first prediction") as session:
        return session.scalar(query)


def labelled_outcomes(
    db: Database,
    *,
    model_version: str | None = None,
    origin: datetime | None = None,
    bucket_days: int | None = None,
) -> list[OutcomeCount]:
    """Answered predictions with a clinician's label (the latest), counted per model version,
    predicted class, label and (with ``origin`` and ``bucket_days``) bucket of prediction days
    from ``origin``'s day: read from the ``label_days`` rollup, a row per day and cell."""
    t = LabelDayRow
    keys: list[Any] = [t.model_version, t.predicted_class, t.label]
    bucket: Any = literal_column("0")
    if bucket_days is not None and origin is not None:
        # never before the origin; integers inlined as in :func:`rollup_traffic`
        bucket = literal_column(f"(label_days.day - {hour_of(origin) // 24}) / {int(bucket_days)}")
        keys.append(bucket)
    query = select(t.model_version, t.predicted_class, t.label, bucket, func.sum(t.n))
    if model_version is not None:
        query = query.where(t.model_version == model_version)
    query = query.group_by(*keys).having(func.sum(t.n) > 0)
    with db.session("aggregate labelled outcomes") as session:
        rows = session.execute(query).all()
    return [OutcomeCount(v, pr, lab, int(b), int(n)) for v, pr, lab, b, n in rows]


def labelled_outcomes_within(
    db: Database, *, model_version: str, origin: datetime, until: datetime, bucket_seconds: int
) -> list[OutcomeCount]:
    """Like :func:`labelled_outcomes`, from the raw rows of ``[origin, until)`` in buckets of
    ``bucket_seconds``: for spans shorter than the rollup's day (a site's first day of labels),
    where a daily count would draw a single point. The span is bounded, so the scan is too."""
    cast = "floor({} / :width)" if db.backend == "postgresql" else "CAST({} / :width AS INTEGER)"
    bucket = cast.format(f"({_epoch(db, 'p.created_at')} - :origin)")
    sql = (
        f"SELECT p.model_version, p.predicted_class, f.label, {bucket} AS b, count(*) "
        "FROM feedback f JOIN predictions p ON p.id = f.prediction_id "
        "WHERE f.id IN (SELECT max(id) FROM feedback GROUP BY prediction_id) "
        "AND p.served_by != 'shadow' AND p.model_version = :version "
        "AND p.created_at >= :since AND p.created_at < :until "
        "GROUP BY p.model_version, p.predicted_class, f.label, b"
    )
    params = {
        "origin": origin.timestamp(),
        "width": float(bucket_seconds),
        "version": model_version,
        "since": origin,
        "until": until,
    }
    with db.session("aggregate labelled outcomes of a day") as session:
        rows = session.execute(text(sql), params).all()
    return [OutcomeCount(v, pr, lab, int(b), int(n)) for v, pr, lab, b, n in rows]


def labelled_times(
    db: Database, model_version: str, since: datetime, until: datetime
) -> tuple[datetime, datetime] | None:
    """First and last prediction time of one version's labelled, answered predictions in
    ``[since, until)`` (raw rows: call it for a bounded span, e.g. one day)."""
    t = PredictionRow
    labelled = select(FeedbackRow.id).where(FeedbackRow.prediction_id == t.id).exists()
    query = select(func.min(t.created_at), func.max(t.created_at)).where(
        t.served_by != "shadow",
        t.model_version == model_version,
        t.created_at >= since,
        t.created_at < until,
        labelled,
    )
    with db.session("find labelled times") as session:
        low, high = session.execute(query).one()
    return None if low is None else (low, high)


def labelled_span(db: Database, model_version: str) -> tuple[datetime, datetime] | None:
    """Start of the first and of the last day holding one version's labelled, answered
    predictions (from the ``label_days`` rollup)."""
    t = LabelDayRow
    query = select(func.min(t.day), func.max(t.day)).where(
        t.model_version == model_version, t.n > 0
    )
    with db.session("find labelled span") as session:
        low, high = session.execute(query).one()
    if low is None:
        return None
    return _day_start(int(low)), _day_start(int(high))


def _day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * 86400, UTC)


def rollup_traffic(
    db: Database, *, start: datetime, until: datetime, bucket_hours: int
) -> list[BucketStats]:
    """Like :func:`traffic_buckets` for buckets of whole hours from ``start`` (an hour
    boundary), read from the hourly rollups: counts exactly, latency percentiles from the
    5 % histogram bins (within 2.5 % of the exact value)."""
    first, end = hour_of(start), math.ceil(until.timestamp() / 3600)  # hours before until
    h, lat = PredictionHourRow, LatencyHourRow
    # Integers inlined, not bound: PostgreSQL matches GROUP BY to the select list by text.
    hour_bucket: Any = literal_column(
        f"(prediction_hours.hour - {int(first)}) / {int(bucket_hours)}"
    )
    counts = (
        select(hour_bucket, func.sum(h.n))
        .where(h.served_by != "shadow", h.hour >= first, h.hour < end)
        .group_by(hour_bucket)
    )
    # In primary-key order, not grouped: the database reads the index range and sorts nothing.
    bins = (
        select(lat.hour, lat.bin, lat.n)
        .where(lat.hour >= first, lat.hour < end)
        .order_by(lat.hour, lat.bin)
    )
    with db.transaction("aggregate traffic rollup") as conn:
        totals = {int(b): int(n) for b, n in conn.execute(counts) if n}
        rows = [tuple(row) for row in conn.execute(bins)]  # plain tuples: NumPy reads them fast
    histogram = _merge(np.array(rows, dtype=np.int64).reshape(-1, 3), first, bucket_hours)
    found = _percentiles(histogram)
    nan = (float("nan"),) * 3
    return [BucketStats(b, totals[b], *found.get(b, nan)) for b in sorted(totals)]


def _merge(hourly: np.ndarray, first: int, bucket_hours: int) -> np.ndarray:
    """Rows of (hour, bin, count) as rows of (bucket, bin, count), sorted, one per pair."""
    if not len(hourly):
        return hourly
    buckets = (hourly[:, 0] - first) // bucket_hours
    order = np.lexsort((hourly[:, 1], buckets))
    pairs = np.stack([buckets[order], hourly[order, 1]], axis=1)
    starts = np.flatnonzero(np.r_[True, np.any(pairs[1:] != pairs[:-1], axis=1)])
    return np.column_stack([pairs[starts], np.add.reduceat(hourly[order, 2], starts)])


def _percentiles(histogram: np.ndarray) -> dict[int, tuple[float, float, float]]:
    """p50/p95/p99 per bucket from rows of (bucket, bin, count) sorted by bucket and bin:
    NumPy's linear interpolation between ranks, each rank valued at its bin's middle.
    Vectorised over every bucket at once (a month at hourly buckets is ~40,000 rows)."""
    if not len(histogram):
        return {}
    buckets, indexes, counts = histogram.T
    ends = np.cumsum(counts)  # global rank r lies in the first row whose end > r
    first = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    offset = np.r_[0, ends][first]  # ranks before each bucket
    total = np.add.reduceat(counts, first)
    values = []
    for p in PERCENTILES:
        rank = p * (total - 1)
        low, high = (
            LATENCY_RATIO ** (indexes[np.searchsorted(ends, offset + r, side="right")] + 0.5)
            for r in (np.floor(rank), np.ceil(rank))
        )
        values.append(low + (high - low) * (rank - np.floor(rank)))
    return {
        int(b): (float(a), float(c), float(d))
        for b, a, c, d in zip(buckets[first], *values, strict=True)
    }


def _text(sql: str) -> TextClause:
    """A raw statement whose time bounds bind like the table's timestamps on every backend."""
    return text(sql).bindparams(
        bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime())
    )
