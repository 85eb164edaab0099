"""``radvigil db verify-archive`` proves an archive against the audit chain (SQLite, real CLI):
a file rewritten together with its manifest entry, a row dropped from the archive, and a
prediction edited behind the log before it was pruned all fail; an honest archive passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import update
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import Settings
from radvigil.service.sinks import AuditedPredictions
from radvigil.store import AuditLog, Database, PredictionStore, upgrade_database
from radvigil.store.archive_audit import verify_archive_against_audit
from radvigil.store.retention import MANIFEST, file_sha256, prune
from radvigil.store.tables import PredictionRow
from tests.unit.test_store_predictions import record

runner = CliRunner()
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
CUT = datetime(2026, 2, 1, tzinfo=UTC)


def _history(home: Settings) -> tuple[Database, AuditLog]:
    db = Database(home.resolved_database_url)
    upgrade_database(db)
    audit = AuditLog(db)
    AuditedPredictions(PredictionStore(db), audit).add_many(
        [record(0, id=f"p{d:02d}", created_at=T0 + timedelta(days=d)) for d in range(40)]
    )
    return db, audit


def _rewrite(archive: Path, path: str, rows: list[dict[str, object]]) -> None:
    """Replace an archived file and make its manifest entry match (what a forger would do)."""
    file = archive / path
    pq.write_table(pa.Table.from_pylist(rows, pq.read_schema(file)), file)
    manifest = json.loads((archive / MANIFEST).read_text())
    for entry in manifest["files"]:
        if entry["path"] == path:
            entry |= {"sha256": file_sha256(file), "rows": len(rows)}
    (archive / MANIFEST).write_text(json.dumps(manifest))


def test_an_archive_is_proved_against_the_prune_records_and_predict_records(
    home: Settings,
) -> None:
    db, audit = _history(home)
    archive = home.home_dir / "archive"
    out = runner.invoke(app, ["db", "prune", "--before", "2026-02-01", "--archive", str(archive)])
    assert out.exit_code == 0, out.output
    assert verify_archive_against_audit(archive, audit) == []
    proved = runner.invoke(app, ["db", "verify-archive", str(archive)])
    assert proved.exit_code == 0
    assert "the archived predictions are the pruned set" in " ".join(proved.stdout.split())

    path = "predictions/2026-01.parquet"
    rows = pq.read_table(archive / path).to_pylist()
    edited = [dict(rows[0], probabilities=json.dumps({"NORMAL": 0.9})), *rows[1:]]
    _rewrite(archive, path, edited)
    only_manifest = runner.invoke(app, ["db", "verify-archive", "--manifest-only", str(archive)])
    assert only_manifest.exit_code == 0  # the forged manifest agrees with the forged file
    failed = runner.invoke(app, ["db", "verify-archive", str(archive)])
    assert failed.exit_code == 1
    assert f"{path}: checksum differs from its db.prune audit record" in " ".join(
        failed.stderr.split()
    )

    _rewrite(archive, path, rows[1:])  # a row dropped from the archive
    assert verify_archive_against_audit(archive, audit) == [
        f"{path}: checksum differs from its db.prune audit record"
    ]
    db.dispose()


def test_a_prediction_edited_behind_the_log_then_pruned_shows_in_the_archive(
    home: Settings,
) -> None:
    db, audit = _history(home)
    with db.session("edit behind the log") as session:
        session.execute(
            update(PredictionRow).where(PredictionRow.id == "p03").values(predicted_class="VIRAL")
        )
    archive = home.home_dir / "archive"
    prune(db, CUT, archive, audit=audit, actor="test")
    assert audit.verify(full=True).ok  # the edited row is gone from the database...
    assert verify_archive_against_audit(archive, audit) == [  # ...but not from the archive
        "archived prediction p03 differs from audit record 4: its outputs were edited in the "
        "archive"
    ]
    db.dispose()
