"""Issue 30's audit-chain findings on SQLite: outputs, feedback and API keys covered, a signed
head, key ids with rotation, and incremental verification from a signed checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from radvigil.config import audit_key_id
from radvigil.loop.actions import label_case
from radvigil.service.sinks import AuditedPredictions
from radvigil.store import (
    AuditLog,
    Database,
    FeedbackStore,
    KeyStore,
    PredictionStore,
    upgrade_database,
)
from radvigil.store.audit import record_hash
from tests.unit.test_notes_desk import _record

OLD, NEW = "o" * 40, "n" * 40


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def sql(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def _predict(db: Database, log: AuditLog, *ids: str) -> None:
    AuditedPredictions(PredictionStore(db), log).add_many([_record(i) for i in ids])


def test_edited_prediction_outputs_are_found(db: Database) -> None:
    log = AuditLog(db, secret=NEW)
    _predict(db, log, "p1", "p2")
    assert log.verify().ok
    sql(
        db,
        """UPDATE predictions SET probabilities = '{"normal": 0.92, "pneumonia": 0.08}'
               WHERE id = 'p2'""",
    )
    result = log.verify()
    assert not result.ok and result.first_bad_id == 2
    assert "p2's outputs differ" in (result.reason or "")
    sql(
        db,
        """UPDATE predictions SET probabilities = '{"normal": 0.08, "pneumonia": 0.92}',
               findings = '[]' WHERE id = 'p2'""",
    )
    assert "p2's outputs differ" in (log.verify().reason or "")


def test_a_label_moved_to_another_prediction_is_found(db: Database) -> None:
    log = AuditLog(db, secret=NEW)
    _predict(db, log, "p1", "p2")
    stored = label_case(PredictionStore(db), FeedbackStore(db), log, "p1", "normal", "dr-a")
    assert log.verify().ok
    sql(db, "UPDATE feedback SET prediction_id = 'p2' WHERE id = :id", id=stored.id)
    result = log.verify()
    assert not result.ok and "its prediction, reviewer, comment or time" in (result.reason or "")


def test_an_admin_key_inserted_behind_the_log_is_found(db: Database) -> None:
    keys = KeyStore(db)
    keys.create("svc", "service")
    log = AuditLog(db)
    assert log.verify().ok
    sql(
        db,
        """INSERT INTO api_keys (name, role, prefix, key_hash, rate_limit, created_at)
           VALUES ('intruder', 'admin', 'abcdef012345', :h, 600, '2026-12-01 00:00:00')""",
        h="0" * 64,
    )
    result = log.verify()
    assert not result.ok and "'intruder' (admin) has no audit record" in (result.reason or "")
    sql(db, "DELETE FROM api_keys WHERE name = 'intruder'")
    sql(db, "UPDATE api_keys SET role = 'admin' WHERE name = 'svc'")
    assert "'svc' differs from audit record" in (log.verify().reason or "")


def test_the_signed_head_cannot_be_deleted_or_forged(db: Database) -> None:
    log = AuditLog(db, secret=NEW)
    _predict(db, log, "p1", "p2", "p3")
    sql(db, "DELETE FROM audit_events WHERE id = 3")
    sql(db, "UPDATE audit_anchors SET last_id = 2 WHERE name = 'head'")
    assert "does not match its signature" in (log.verify().reason or "")
    sql(db, "DELETE FROM audit_anchors")
    assert "signed head is missing" in (log.verify().reason or "")


def test_records_name_their_key_and_old_keys_verify_after_rotation(db: Database) -> None:
    before = AuditLog(db, secret=OLD, old_keys={})
    _predict(db, before, "p1")
    assert before.list()[0].key_id == audit_key_id(OLD)
    rotated = AuditLog(db, secret=NEW, old_keys={})
    _predict(db, rotated, "p2")
    assert [e.key_id for e in rotated.list(newest_first=False)] == [
        audit_key_id(OLD),
        audit_key_id(NEW),
    ]
    result = rotated.verify()
    assert not result.ok and "RADVIGIL_AUDIT_KEYS_OLD" in (result.reason or "")
    assert AuditLog(db, secret=NEW, old_keys={audit_key_id(OLD): OLD}).verify().ok


def test_records_from_before_key_ids_still_verify(db: Database) -> None:
    log = AuditLog(db, secret=NEW, old_keys={})
    log.append(actor="a", action="x", object_type="y", details={"n": 1})
    legacy = {**log.list()[0].model_dump(), "key_id": None}
    sql(db, "UPDATE audit_events SET key_id = NULL, hash = :h", h=record_hash(legacy, NEW))
    sql(db, "DELETE FROM audit_anchors")  # as the chain was before migration 0007
    assert log.verify().ok
    log.append(actor="a", action="x", object_type="y", details={"n": 2})
    assert log.verify().ok
    assert AuditLog(db, secret=OLD, old_keys={"legacy": NEW}).verify(full=True).reason


def test_verification_is_incremental_from_the_signed_checkpoint(db: Database) -> None:
    log = AuditLog(db, secret=NEW)
    _predict(db, log, *(f"p{i}" for i in range(6)))
    first = log.verify(full=False)
    assert (first.ok, first.from_id, first.checked) == (True, 0, 6)
    _predict(db, log, "p6", "p7")
    later = log.verify(full=False)
    assert (later.ok, later.from_id, later.checked, later.last_id) == (True, 6, 2, 8)
    sql(db, "UPDATE audit_events SET actor = 'someone-else' WHERE id = 2")
    assert log.verify(full=False).ok  # history before the checkpoint: only a full walk...
    full = log.verify(full=True)
    assert (full.ok, full.first_bad_id) == (False, 2)  # ...re-reads it
    sql(db, "UPDATE audit_events SET actor = 'x' WHERE id = 8")  # the checkpoint's own record
    assert log.verify(full=False).from_id == 0  # a broken checkpoint falls back to a full walk


def test_incremental_verification_checks_the_labels_after_the_checkpoint(db: Database) -> None:
    log = AuditLog(db, secret=NEW)
    _predict(db, log, "p1", "p2", "p3")
    store, feedback = PredictionStore(db), FeedbackStore(db)
    label_case(store, feedback, log, "p1", "normal", "dr-ana")
    assert log.verify(full=False).ok
    label_case(store, feedback, log, "p2", "pneumonia", "dr-ana")
    sql(db, "UPDATE feedback SET label = 'normal' WHERE prediction_id = 'p2'")
    edited = log.verify(full=False)  # a label given after the checkpoint, edited
    assert not edited.ok and "the label was edited" in (edited.reason or "")
    sql(db, "UPDATE feedback SET label = 'pneumonia' WHERE prediction_id = 'p2'")
    assert log.verify(full=False).ok
    sql(
        db,
        "INSERT INTO feedback (prediction_id, label, reviewer, created_at) "
        "VALUES ('p3', 'normal', 'mallory', '2026-01-01 00:00:00.000000')",
    )
    behind = log.verify(full=False)  # a row inserted behind the log after the checkpoint
    assert not behind.ok and "inserted behind the log" in (behind.reason or "")
