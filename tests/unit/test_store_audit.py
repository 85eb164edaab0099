"""The audit hash chain on SQLite: appends, tamper detection, concurrency, PHI guard."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from radvigil.errors import InputError
from radvigil.store import AuditCreate, AuditLog, Database, upgrade_database
from radvigil.store.audit import GENESIS, record_hash


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            actor="dr-a",
            action="prediction.label",
            object_type="prediction",
            object_id=f"req-{i}",
            model_version="3",
            request_id=f"req-{i}",
            details={"label": "VIRAL", "score": 0.25 * i, "big": 1e20, "nested": {"k": [1, 2]}},
        )


def sql(db: Database, statement: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement))


def test_chain_links_records_and_verifies(db: Database) -> None:
    log = AuditLog(db)
    assert log.verify().ok and log.verify().checked == 0
    fill(log, 5)
    events = log.list(newest_first=False)
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    result = log.verify(batch_size=2)
    assert (result.ok, result.checked, result.last_id) == (True, 5, 5)
    assert result.head_hash == events[-1].hash
    assert log.verify(expected_head=events[2].hash).ok
    assert [e.id for e in log.list(limit=2)] == [5, 4]
    assert [e.object_id for e in log.list(object_id="req-3")] == ["req-3"]


def test_edited_record_is_found(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 5)
    sql(db, "UPDATE audit_events SET actor = 'mallory' WHERE id = 3")
    result = log.verify()
    assert (result.ok, result.first_bad_id, result.checked) == (False, 3, 2)
    assert "does not match its hash" in (result.reason or "")


def test_edit_with_recomputed_hash_breaks_the_next_link(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 5)
    forged = log.list(object_id="req-2")[0].model_dump()
    forged["actor"] = "mallory"
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET actor = 'mallory', hash = :h WHERE id = 3"),
            {"h": record_hash(forged)},
        )
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "does not follow record 3" in (result.reason or "")


def test_deleted_record_is_found(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 5)
    sql(db, "DELETE FROM audit_events WHERE id = 4")
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "record(s) 4 missing" in (result.reason or "")


def test_deleted_and_renumbered_records_are_found(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 5)
    sql(db, "DELETE FROM audit_events WHERE id = 2")
    sql(db, "UPDATE audit_events SET id = id - 1 WHERE id > 2")
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 2)
    assert "does not follow record 1" in (result.reason or "")


def test_reordered_records_are_found(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 4)
    sql(db, "UPDATE audit_events SET id = -1 WHERE id = 2")
    sql(db, "UPDATE audit_events SET id = 2 WHERE id = 3")
    sql(db, "UPDATE audit_events SET id = 3 WHERE id = -1")
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 2)


def test_removed_tail_is_found_against_a_saved_head(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 4)
    head = log.verify().head_hash
    sql(db, "DELETE FROM audit_events WHERE id = 4")
    result = log.verify()  # issue 30: the signed head in the database shows a cut tail
    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "signed head is record 4" in (result.reason or "")
    result = log.verify(expected_head=head)  # and so does a head saved elsewhere
    assert (result.ok, result.first_bad_id) == (False, 4)
    assert "removed from the end" in (result.reason or "")


def test_append_many_chains_a_batch_in_one_transaction(db: Database) -> None:
    log = AuditLog(db)
    fill(log, 1)
    events = log.append_many(
        [
            AuditCreate(actor="writer", action="predict", object_type="prediction", object_id=i)
            for i in ("r1", "r2", "r3")
        ]
    )
    assert [e.id for e in events] == [2, 3, 4]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert log.append_many([]) == []
    assert log.verify().checked == 4
    with pytest.raises(InputError, match="invalid audit record"):
        log.append(actor="", action="x", object_type="y")


def test_details_must_be_plain_json_without_phi(db: Database) -> None:
    log = AuditLog(db)
    with pytest.raises(InputError, match="patient identifiers \\('Patient_ID'\\)"):
        log.append(actor="a", action="x", object_type="y", details={"ok": {"Patient_ID": "123"}})
    with pytest.raises(InputError, match="plain JSON"):
        log.append(actor="a", action="x", object_type="y", details={"v": float("nan")})
    assert log.verify().checked == 0


def test_concurrent_threads_keep_one_chain(db: Database) -> None:
    def work() -> None:
        fill(AuditLog(db), 15)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = AuditLog(db).verify()
    assert (result.ok, result.checked) == (True, 60)


def test_concurrent_processes_keep_one_chain(db: Database) -> None:
    script = (
        "import sys\n"
        "from radvigil.store import AuditLog, Database\n"
        "log = AuditLog(Database(sys.argv[1]))\n"
        "for i in range(20):\n"
        "    log.append(actor=sys.argv[2], action='x', object_type='y', details={'i': i})\n"
    )
    url = db.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, url, f"p{n}"], stderr=subprocess.PIPE)
        for n in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    result = AuditLog(db).verify()
    assert (result.ok, result.checked) == (True, 40)
