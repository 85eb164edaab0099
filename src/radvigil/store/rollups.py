"""Rollup tables kept beside the rows they count, in the same transaction as each write.

``prediction_hours`` and ``latency_hours`` grow by one upsert per written batch of
predictions (:func:`count_predictions`); ``label_days`` moves one count per label
(:func:`move_label`). Pages then read a few rows per hour or day instead of the history
(``store/aggregates.py``). :func:`rebuild` recomputes all three from the raw rows in SQL: the
migration's backfill, ``radvigil db rebuild-rollups``, and the reference the tests compare
the maintained counts with.

Upserts add to existing counts (``ON CONFLICT DO UPDATE SET n = n + excluded.n``) in key
order, so concurrent writers (service replicas) lock rollup rows in the same order and never
deadlock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, text
from sqlalchemy.dialects import postgresql, sqlite

from radvigil.store.tables import LabelDayRow, LatencyHourRow, PredictionHourRow

HOURS = cast(Table, PredictionHourRow.__table__)
LATENCY = cast(Table, LatencyHourRow.__table__)
LABELS = cast(Table, LabelDayRow.__table__)
LATENCY_RATIO = 1.05  # histogram bins 5 % wide: a percentile read from them is within 2.5 %
MIN_LATENCY_MS = 0.01  # a zero or negative latency falls in the lowest bin
# The prediction columns a label's rollup cell is keyed by.
ROLLUP_FIELDS = (
    "created_at",
    "model_name",
    "model_version",
    "site",
    "predicted_class",
    "served_by",
)


def hour_of(moment: datetime) -> int:
    """Hours since the Unix epoch of a time (a naive one is taken as UTC, as stored)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() // 3600)


def latency_bin(latency_ms: float) -> int:
    """The histogram bin of a latency: ``floor(ln(ms) / ln(1.05))``."""
    return math.floor(math.log(max(latency_ms, MIN_LATENCY_MS)) / math.log(LATENCY_RATIO))


def bin_value(index: int) -> float:
    """A bin's representative latency (ms): its geometric middle."""
    return float(LATENCY_RATIO ** (index + 0.5))


def _upsert(conn: Connection, table: Table, counts: Mapping[tuple[Any, ...], int]) -> None:
    """Add ``counts`` (by primary key tuple) to ``table``'s ``n``, keys in sorted order."""
    if not counts:
        return
    keys = [c.name for c in table.primary_key.columns]
    rows = [{**dict(zip(keys, key, strict=True)), "n": n} for key, n in sorted(counts.items())]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={"n": table.c.n + stmt.excluded.n})
    conn.execute(stmt, rows)


def count_predictions(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add just-inserted prediction rows to the hourly rollups (same transaction)."""
    hours: Counter[tuple[Any, ...]] = Counter()
    latency: Counter[tuple[Any, ...]] = Counter()
    for row in rows:
        hour = hour_of(row["created_at"])
        hours[
            (
                hour,
                row["model_name"],
                row["model_version"],
                row["site"] or "",
                row["predicted_class"],
                row["served_by"],
                bool(row["routed_to_review"]),
            )
        ] += 1
        if row["served_by"] != "shadow":
            latency[(hour, latency_bin(float(row["latency_ms"])))] += 1
    _upsert(conn, HOURS, hours)
    _upsert(conn, LATENCY, latency)


def move_label(conn: Connection, prediction: Mapping[str, Any], old: str | None, new: str) -> None:
    """Count ``prediction`` under its new latest label ``new`` (and no longer under ``old``).
    Shadow predictions are not counted: the performance page judges answered cases only."""
    if prediction["served_by"] == "shadow" or old == new:
        return
    key = (
        hour_of(prediction["created_at"]) // 24,
        prediction["model_name"],
        prediction["model_version"],
        prediction["site"] or "",
        prediction["predicted_class"],
    )
    counts = {(*key, new): 1}
    if old is not None:
        counts[(*key, old)] = -1
    _upsert(conn, LABELS, counts)


def _hour_sql(dialect: str, column: str) -> str:
    """SQL for :func:`hour_of` (exact: whole seconds, integer division)."""
    if dialect == "postgresql":
        return f"CAST(floor(extract(epoch from {column}) / 3600) AS INTEGER)"
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / 3600)"


def _bin_sql(dialect: str) -> str:
    """SQL for :func:`latency_bin` (SQLite needs its math functions, 3.35 or later)."""
    low = "greatest" if dialect == "postgresql" else "max"
    return f"CAST(floor(ln({low}(latency_ms, {MIN_LATENCY_MS})) / ln({LATENCY_RATIO})) AS INTEGER)"


def rebuild(conn: Connection) -> None:
    """Recompute the three rollups from the raw rows, in SQL, replacing what they held.

    On PostgreSQL the writers wait (``SHARE`` locks on ``predictions`` and ``feedback``) so no
    write falls between the recount and the commit; SQLite serialises writers anyway.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("LOCK TABLE predictions, feedback IN SHARE MODE"))
    for table in (HOURS, LATENCY, LABELS):
        conn.execute(delete(table))
    hour = _hour_sql(dialect, "created_at")
    conn.execute(
        text(
            "INSERT INTO prediction_hours (hour, model_name, model_version, site, "
            "predicted_class, served_by, routed_to_review, n) "
            f"SELECT {hour}, model_name, model_version, coalesce(site, ''), predicted_class, "
            "served_by, routed_to_review, count(*) FROM predictions "
            f"GROUP BY {hour}, model_name, model_version, coalesce(site, ''), predicted_class, "
            "served_by, routed_to_review"
        )
    )
    conn.execute(
        text(
            "INSERT INTO latency_hours (hour, bin, n) "
            f"SELECT {hour}, {_bin_sql(dialect)}, count(*) FROM predictions "
            f"WHERE served_by != 'shadow' GROUP BY {hour}, {_bin_sql(dialect)}"
        )
    )
    day = f"({_hour_sql(dialect, 'p.created_at')} / 24)"
    conn.execute(
        text(
            "INSERT INTO label_days (day, model_name, model_version, site, predicted_class, "
            "label, n) "
            f"SELECT {day}, p.model_name, p.model_version, coalesce(p.site, ''), "
            "p.predicted_class, f.label, count(*) "
            "FROM feedback f JOIN predictions p ON p.id = f.prediction_id "
            "WHERE f.id IN (SELECT max(id) FROM feedback GROUP BY prediction_id) "
            "AND p.served_by != 'shadow' "
            f"GROUP BY {day}, p.model_name, p.model_version, coalesce(p.site, ''), "
            "p.predicted_class, f.label"
        )
    )
