"""``radvigil db prune`` on SQLite through the real CLI: old rows move to Parquet and go,
labelled cases, alert windows and the kept period stay as they were, the archive's checksums
verify, and the audit chain still verifies after the prune."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import Settings
from radvigil.loop.actions import label_case
from radvigil.service.sinks import AuditedPredictions
from radvigil.store import (
    AlertCreate,
    AlertStore,
    AuditLog,
    Database,
    FeedbackStore,
    MonitorResultCreate,
    MonitorResultStore,
    PredictionStore,
    upgrade_database,
)
from radvigil.store.retention import verify_archive
from tests.unit.test_store_predictions import record

runner = CliRunner()
T0 = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)  # 30 days a day apart: Jan 20 to Feb 18
CUT = datetime(2026, 2, 4, tzinfo=UTC)


def _window(day: int, detector: str) -> MonitorResultCreate:
    end = T0 + timedelta(days=day)
    return MonitorResultCreate(
        model_name="chest-3class",
        model_version="3",
        window_kind="count",
        window_start=end - timedelta(hours=6),
        window_end=end,
        n=10,
        detector=detector,
    )


def test_prune_archives_then_deletes_and_keeps_what_must_stay(home: Settings) -> None:
    db = Database(home.resolved_database_url)
    upgrade_database(db)
    store = PredictionStore(db, keep_review_images=True)
    audit = AuditLog(db)
    AuditedPredictions(store, audit).add_many(
        [
            record(0, id=f"p{d:02d}", created_at=T0 + timedelta(days=d), review_image=b"png")
            for d in range(30)
        ]
    )
    feedback = FeedbackStore(db)
    for pid in ("p01", "p02", "p20"):  # labelled: kept whatever their age
        label_case(store, feedback, audit, pid, "VIRAL", "dr-ana")
    results = MonitorResultStore(db)
    windows = [results.add_window([_window(d, "mmd"), _window(d, "ood_rate")]) for d in range(30)]
    AlertStore(db, audit).open(
        AlertCreate(
            model_name="chest-3class",
            model_version="3",
            rule="mmd-drift",
            detector="mmd",
            message="old drift",
            first_window=windows[0][0].id,
            last_window=windows[1][0].id,
        )
    )
    kept_before = store.list(since=CUT, limit=None)
    kept_results = [r for r in results.list(limit=None) if r.window_end >= CUT]
    archive = home.home_dir / "archive"

    out = runner.invoke(app, ["db", "prune", "--before", "2026-02-04", "--archive", str(archive)])

    assert out.exit_code == 0, out.output
    assert "predictions: 13 deleted, 2 older kept" in out.stdout  # 15 old, 2 labelled
    assert "monitor_results: 28 deleted, 2 older kept" in out.stdout  # 30 old, 2 cited
    assert store.list(since=CUT, limit=None) == kept_before
    assert [r for r in results.list(limit=None) if r.window_end >= CUT] == kept_results
    assert {r.id for r in store.list(until=CUT, limit=None)} == {"p01", "p02"}
    manifest = json.loads((archive / "manifest.json").read_text())
    files = {(f["table"], f["month"]): f for f in manifest["files"]}
    assert set(files) == {
        (t, m) for t in ("predictions", "monitor_results") for m in ("2026-01", "2026-02")
    }
    january = pq.read_table(archive / files[("predictions", "2026-01")]["path"]).to_pylist()
    assert [r["id"] for r in january] == [f"p{d:02d}" for d in range(12) if d not in (1, 2)]
    assert january[0]["review_image"] == b"png"
    assert json.loads(january[0]["probabilities"]) == record(0).probabilities
    assert january[0]["created_at"] == T0
    assert verify_archive(archive) == []
    assert audit.verify().ok  # the chain is untouched; labels still match their records
    assert runner.invoke(app, ["db", "verify-archive", str(archive)]).exit_code == 0

    tampered = archive / files[("monitor_results", "2026-02")]["path"]
    tampered.write_bytes(tampered.read_bytes() + b"x")
    assert verify_archive(archive) == [
        f"{files[('monitor_results', '2026-02')]['path']}: checksum differs from the manifest"
    ]
    failed = runner.invoke(app, ["db", "verify-archive", str(archive)])
    assert failed.exit_code == 1 and "checksum differs" in failed.stderr
    db.dispose()
