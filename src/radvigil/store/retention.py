"""Retention: old predictions and monitor results moved to Parquet, then deleted in batches.

``prune`` archives first and deletes second: for each table and calendar month before the
cut-off it streams the rows to one Parquet file (pyarrow, bounded memory), records the file's
SHA-256 in the archive's ``manifest.json``, and only then deletes those rows, ``batch_size``
at a time, each batch its own short transaction, so the writer is never locked out for long.

What is kept whatever its age:
- predictions with a clinician's label or a patient note: labels are the ground truth the
  monitors and retraining read (a retraining run uses labelled drifters only), and the audit
  log checks every label against its record;
- monitor results an alert points at (its first and last window);
- the audit log: never pruned here; its chain stays whole and verifiable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Column, Table, delete, exists, func, or_, select

from radvigil.errors import DataError, InputError
from radvigil.store.audit_coverage import combine_digests, id_set_digest
from radvigil.store.db import Database
from radvigil.store.tables import AlertRow, FeedbackRow, MonitorResultRow, NoteRow, PredictionRow

if TYPE_CHECKING:
    from radvigil.store.audit import AuditLog

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
PREDICTIONS = cast(Table, PredictionRow.__table__)
RESULTS = cast(Table, MonitorResultRow.__table__)


@dataclass
class ArchivedFile:
    """One Parquet file of the archive: a table's rows of one month."""

    table: str
    month: str
    path: str
    rows: int
    sha256: str


@dataclass
class PruneReport:
    """What one prune archived, deleted and kept."""

    before: datetime
    archive: Path | None
    files: list[ArchivedFile] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    pruned_predictions: str = field(default_factory=lambda: id_set_digest([]))

    def audit_details(self) -> dict[str, Any]:
        """What the ``db.prune`` audit record keeps: the cut, counts, archive checksums and the
        digest of the pruned prediction ids that ``audit verify`` checks missing rows against."""
        return {
            "before": self.before.isoformat(),
            "deleted": self.deleted,
            "kept": self.kept,
            "pruned_predictions": self.pruned_predictions,
            "archived_files": [{"path": f.path, "sha256": f.sha256} for f in self.files],
        }


def prunable(table: Table, before: datetime) -> Any:
    """The WHERE clause of the rows of ``table`` a prune before ``before`` removes."""
    if table is PREDICTIONS:
        t = PredictionRow
        labelled = exists().where(FeedbackRow.prediction_id == t.id)
        noted = exists().where(NoteRow.prediction_id == t.id)
        return (t.created_at < before) & ~labelled & ~noted
    r = MonitorResultRow
    cited = exists().where(or_(AlertRow.first_window == r.id, AlertRow.last_window == r.id))
    return (r.window_end < before) & ~cited


def _time_column(table: Table) -> Column[Any]:
    return table.c.created_at if table is PREDICTIONS else table.c.window_end


def prune(
    db: Database,
    before: datetime,
    archive: Path | None,
    *,
    batch_size: int = 5000,
    audit: AuditLog | None = None,
    actor: str = "radvigil",
) -> PruneReport:
    """Archive (unless ``archive`` is None) and delete predictions and monitor results older
    than ``before``; see the module docstring for what is kept. With ``audit``, the prune is
    recorded in the audit chain (``db.prune``), which is what lets ``audit verify`` tell the
    pruned predictions from ones deleted behind the log.

    Raises:
        InputError: ``before`` is naive or ``batch_size`` is not positive.
        DataError: the archive folder cannot be written.
    """
    if before.tzinfo is None:
        raise InputError("--before needs a time zone (e.g. 2026-01-01T00:00:00+00:00)")
    if batch_size < 1:
        raise InputError("batch_size must be positive")
    report = PruneReport(before=before.astimezone(UTC), archive=archive)
    for table in (RESULTS, PREDICTIONS):
        for month in _months(db, table, before):
            ids = _ids(db, table, before, month)
            if not ids:
                continue
            if archive is not None:
                report.files.append(_archive(db, table, month, ids, archive, batch_size))
                _write_manifest(archive, report)
            deleted = _delete(db, table, ids, batch_size)
            report.deleted[table.name] = report.deleted.get(table.name, 0) + deleted
            if table is PREDICTIONS:
                report.pruned_predictions = combine_digests(
                    report.pruned_predictions, id_set_digest(ids)
                )
        report.kept[table.name] = _count(db, table, _time_column(table) < before)
    log.info("pruned before %s: %s (kept %s)", before, report.deleted, report.kept)
    if audit is not None:
        audit.append(
            actor=actor, action="db.prune", object_type="database", details=report.audit_details()
        )
    return report


def _months(db: Database, table: Table, before: datetime) -> list[str]:
    """The calendar months (YYYY-MM) holding prunable rows, oldest first."""
    column = _time_column(table)
    query = select(func.min(column), func.max(column)).where(prunable(table, before))
    with db.session("find months to prune") as session:
        low, high = session.execute(query).one()
    if low is None:
        return []
    months, year, month = [], low.year, low.month
    while (year, month) <= (high.year, high.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _bounds(month: str) -> tuple[datetime, datetime]:
    year, number = map(int, month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    following = (year + 1, 1) if number == 12 else (year, number + 1)
    return start, datetime(*following, 1, tzinfo=UTC)


def _ids(db: Database, table: Table, before: datetime, month: str) -> list[Any]:
    """Ids of one month's prunable rows, oldest first (ids only: a few bytes a row)."""
    start, end = _bounds(month)
    column = _time_column(table)
    query = (
        select(table.c.id)
        .where(prunable(table, before), column >= start, column < end)
        .order_by(column, table.c.id)
    )
    with db.session("list rows to prune") as session:
        return list(session.scalars(query))


def _batches(ids: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _archive(
    db: Database, table: Table, month: str, ids: Sequence[Any], archive: Path, batch_size: int
) -> ArchivedFile:
    """Stream the rows of ``ids`` into one Parquet file; its SHA-256 for the manifest."""
    folder = archive / table.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write the archive at {archive}: {exc.strerror}") from exc
    path = _free_name(folder, month)
    schema = _schema(table)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in _batches(ids, batch_size):
            query = select(table).where(table.c.id.in_(list(batch))).order_by(table.c.id)
            with db.session("read rows to archive") as session:
                rows = session.execute(query).mappings().all()
            writer.write_table(pa.Table.from_pylist([_plain(table, r) for r in rows], schema))
    return ArchivedFile(
        table.name, month, str(path.relative_to(archive)), len(ids), file_sha256(path)
    )


def _free_name(folder: Path, month: str) -> Path:
    """``2026-01.parquet``; a later prune of the same month adds ``2026-01.2.parquet``."""
    path, part = folder / f"{month}.parquet", 1
    while path.exists():
        part += 1
        path = folder / f"{month}.{part}.parquet"
    return path


def _schema(table: Table) -> pa.Schema:
    """Parquet columns: JSON as text, bytes as binary, times as UTC microseconds."""
    fields = []
    for column in table.columns:
        kind = _ARROW.get(type(column.type).__name__)
        fields.append(pa.field(column.name, kind or _ARROW_BY_PY[column.type.python_type]))
    return pa.schema(fields)


_ARROW = {
    "UTCDateTime": pa.timestamp("us", tz="UTC"),
    "JSON": pa.string(),
    "LargeBinary": pa.binary(),
}
_ARROW_BY_PY = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _plain(table: Table, row: Any) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        value = row[column.name]
        if column.type.__class__.__name__ == "JSON" and value is not None:
            value = json.dumps(value, sort_keys=True)
        out[column.name] = value
    return out


def _delete(db: Database, table: Table, ids: Sequence[Any], batch_size: int) -> int:
    """Delete by id, one short transaction per batch (the writer waits one batch at most)."""
    deleted = 0
    for batch in _batches(ids, batch_size):
        with db.transaction("prune rows") as conn:
            deleted += conn.execute(delete(table).where(table.c.id.in_(list(batch)))).rowcount
    return deleted


def _count(db: Database, table: Table, where: Any) -> int:
    with db.session("count kept rows") as session:
        return int(session.scalar(select(func.count()).select_from(table).where(where)) or 0)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(archive: Path, report: PruneReport) -> None:
    """Add this prune's files to ``manifest.json`` (earlier prunes' entries are kept)."""
    path = archive / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {"files": [], "prunes": []}
    known = {entry["path"] for entry in manifest["files"]}
    for item in report.files:
        if item.path not in known:
            manifest["files"].append(item.__dict__)
    prunes = [p for p in manifest["prunes"] if p.get("before") != report.before.isoformat()]
    manifest["prunes"] = [
        *prunes,
        {"before": report.before.isoformat(), "files": len(report.files)},
    ]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(manifest, indent=2))
    temporary.replace(path)


def verify_archive(archive: Path) -> list[str]:
    """Problems with an archive (empty when every file is there, whole and readable)."""
    path = archive / MANIFEST
    if not path.is_file():
        return [f"no {MANIFEST} in {archive}"]
    problems = []
    for entry in json.loads(path.read_text())["files"]:
        file = archive / entry["path"]
        if not file.is_file():
            problems.append(f"{entry['path']}: missing")
            continue
        if file_sha256(file) != entry["sha256"]:
            problems.append(f"{entry['path']}: checksum differs from the manifest")
            continue
        rows = pq.ParquetFile(file).metadata.num_rows
        if rows != entry["rows"]:
            problems.append(f"{entry['path']}: {rows} rows, the manifest says {entry['rows']}")
    return problems
