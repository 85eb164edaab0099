"""An archive proved against the audit chain, not only against its own manifest.

The manifest sits beside the files, so whoever can rewrite a file can rewrite the manifest
too. The ``db.prune`` audit records cannot be rewritten without the audit key: each names
every file it archived with its SHA-256, and the digest of the prediction ids it removed. So,
once the chain verifies, :func:`verify_archive_against_audit` checks that

- every file a prune recorded is in the archive with that checksum, and every prediction or
  monitor-result file in the archive was recorded by a prune;
- the archived prediction ids are exactly the set the recording prunes removed (same
  order-free digest as ``audit verify``);
- each archived prediction's outputs match the digest its ``predict`` audit record keeps, the
  same check ``audit verify`` makes of the rows still in the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sqlalchemy import select

from radvigil.store.audit import AuditLog
from radvigil.store.audit_coverage import (
    PREDICTION_FIELDS,
    combine_digests,
    id_set_digest,
    prediction_digest,
)
from radvigil.store.retention import file_sha256, verify_archive
from radvigil.store.tables import AuditEventRow

_audit = AuditEventRow.__table__
_JSON_FIELDS = ("probabilities", "findings", "warnings")  # stored as JSON text in Parquet
_BATCH = 1000


def verify_archive_against_audit(archive: Path, audit: AuditLog) -> list[str]:
    """Problems with ``archive`` as the audit chain records it (empty: proved).

    Runs the manifest check first, then an incremental chain verification (the prune
    records are only trusted from a chain that verifies), then the checks above.
    """
    problems = verify_archive(archive)
    verdict = audit.verify(full=False)
    if not verdict.ok:
        return [*problems, f"the audit chain does not verify: {verdict.reason}"]
    with audit.db.transaction("read prune records") as conn:
        prunes = [
            (audit_id, details if isinstance(details, dict) else {})
            for audit_id, details in conn.execute(
                select(_audit.c.id, _audit.c.details)
                .where(_audit.c.action == "db.prune")
                .order_by(_audit.c.id)
            )
        ]
    recorded: dict[str, str] = {}
    digests = []
    for _, details in prunes:
        files = details.get("archived_files") or []
        recorded |= {f["path"]: f["sha256"] for f in files}
        if any(f["path"].startswith("predictions/") for f in files):
            digests.append(str(details.get("pruned_predictions")))
    for path, sha256 in sorted(recorded.items()):
        file = archive / path
        if not file.is_file():
            problems.append(f"{path}: recorded by a db.prune audit record but missing")
        elif file_sha256(file) != sha256:
            problems.append(f"{path}: checksum differs from its db.prune audit record")
    for table in ("predictions", "monitor_results"):
        for file in sorted((archive / table).glob("*.parquet")):
            path = file.relative_to(archive).as_posix()
            if path not in recorded:
                problems.append(f"{path}: no db.prune audit record names this file")
    if problems:
        return problems
    ids: list[str] = []
    for batch in _prediction_batches(archive, sorted(p for p in recorded if _is_prediction(p))):
        ids += [row["id"] for row in batch]
        problems += _check_outputs(audit, batch)
    if id_set_digest(ids) != combine_digests(*digests):
        problems.append(
            f"the {len(ids):,} archived predictions are not the set the recorded prunes "
            "removed: rows were added to or dropped from the archive"
        )
    return problems


def _is_prediction(path: str) -> bool:
    return path.startswith("predictions/")


def _prediction_batches(archive: Path, paths: list[str]) -> Iterator[list[dict[str, Any]]]:
    """The archived predictions' audited fields, a batch at a time (bounded memory)."""
    for path in paths:
        parquet = pq.ParquetFile(archive / path)
        for batch in parquet.iter_batches(batch_size=_BATCH, columns=list(PREDICTION_FIELDS)):
            rows = batch.to_pylist()
            for row in rows:
                for name in _JSON_FIELDS:
                    row[name] = json.loads(row[name])
            yield rows


def _check_outputs(audit: AuditLog, rows: list[dict[str, Any]]) -> list[str]:
    """Archived rows whose outputs differ from their ``predict`` audit record."""
    query = select(_audit.c.id, _audit.c.object_id, _audit.c.details).where(
        _audit.c.action == "predict", _audit.c.object_id.in_([row["id"] for row in rows])
    )
    with audit.db.transaction("read predict records") as conn:
        recorded = {
            object_id: (audit_id, (details or {}).get("outputs_sha256"))
            for audit_id, object_id, details in conn.execute(query)
        }
    problems = []
    for row in rows:
        audit_id, digest = recorded.get(row["id"], (None, None))
        if digest is not None and prediction_digest(row) != digest:
            problems.append(
                f"archived prediction {row['id']} differs from audit record {audit_id}: "
                "its outputs were edited in the archive"
            )
    return problems
