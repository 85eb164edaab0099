"""Aggregates computed by the database: traffic buckets and labelled outcomes.

Pages and query routes ask for counts and percentiles, not rows, so their cost is the size of
the answer, not of the history. PostgreSQL computes latency percentiles with
``percentile_cont``; SQLite, which lacks it, with window functions and the same linear
interpolation (NumPy's default), so both backends answer alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, bindparam, func, select, text

from radvigil.store.db import Database
from radvigil.store.tables import FeedbackRow, PredictionRow, UTCDateTime

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
    bucket_seconds: int | None = None,
) -> list[OutcomeCount]:
    """Answered predictions with a clinician's label (the latest), counted per model version,
    predicted class, label and (with ``origin`` and ``bucket_seconds``) time bucket."""
    bucket = "0"
    params: dict[str, Any] = {}
    if bucket_seconds is not None and origin is not None:
        cast = (
            "floor({} / :width)" if db.backend == "postgresql" else "CAST({} / :width AS INTEGER)"
        )
        bucket = cast.format(f"({_epoch(db, 'p.created_at')} - :origin)")
        params = {"origin": origin.timestamp(), "width": float(bucket_seconds)}
    version = ""
    if model_version is not None:
        version = "AND p.model_version = :version "
        params["version"] = model_version
    sql = (
        f"SELECT p.model_version, p.predicted_class, f.label, {bucket} AS b, count(*) "
        "FROM feedback f JOIN predictions p ON p.id = f.prediction_id "
        "WHERE f.id IN (SELECT max(id) FROM feedback GROUP BY prediction_id) "
        f"AND p.served_by != 'shadow' {version}"
        "GROUP BY p.model_version, p.predicted_class, f.label, b"
    )
    with db.session("aggregate labelled outcomes") as session:
        rows = session.execute(text(sql), params).all()
    return [OutcomeCount(v, pr, lab, int(b), int(n)) for v, pr, lab, b, n in rows]


def labelled_span(db: Database, model_version: str) -> tuple[datetime, datetime] | None:
    """First and last prediction time among one version's labelled, answered predictions."""
    t = PredictionRow
    labelled = select(FeedbackRow.id).where(FeedbackRow.prediction_id == t.id).exists()
    query = select(func.min(t.created_at), func.max(t.created_at)).where(
        t.served_by != "shadow", t.model_version == model_version, labelled
    )
    with db.session("find labelled span") as session:
        low, high = session.execute(query).one()
    return None if low is None else (low, high)


def _text(sql: str) -> TextClause:
    """A raw statement whose time bounds bind like the table's timestamps on every backend."""
    return text(sql).bindparams(
        bindparam("since", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime())
    )
