"""The store on real PostgreSQL: migrations, keys, the audit chain, and a database outage."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from radvigil.errors import StoreUnavailableError
from radvigil.store import (
    AuditLog,
    Database,
    KeyStore,
    PredictionRecord,
    PredictionStore,
    PredictionWriter,
    Spool,
    check_schema,
    head_revision,
    upgrade_database,
)
from radvigil.store.tables import Base
from tests.integration.conftest import Cluster

pytestmark = pytest.mark.integration


def record(i: int) -> PredictionRecord:
    return PredictionRecord(
        id=f"req-{i:05d}",
        model_name="chest-pneumonia",
        model_version="2",
        task="chest-pneumonia",
        probabilities={"NORMAL": 0.2, "PNEUMONIA": 0.8},
        predicted_class="PNEUMONIA",
        confidence=0.8,
        image_stats={"mean": 0.5},
        embedding=[0.25, float(i)],
        latency_ms=12.0,
        served_by="shadow" if i % 5 == 0 else "champion",
    )


def psql(url: str, statement: str) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(statement)


def test_migrations_create_the_schema_the_models_describe(pg_url: str) -> None:
    db = Database(pg_url)
    assert upgrade_database(pg_url) == head_revision()
    assert upgrade_database(db) == head_revision()  # twice is a no-op
    check_schema(db)
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_predictions_and_keys(pg_url: str) -> None:
    upgrade_database(pg_url)
    db = Database(pg_url)
    store = PredictionStore(db)
    items = [record(i) for i in range(15)]
    assert store.add_many(items[:10]) == 10
    assert store.add_many(items[5:]) == 5  # the overlap is skipped, not duplicated
    assert store.get("req-00003") == items[3]
    assert store.count(served_by="shadow") == 3

    keys = KeyStore(db)
    token, key = keys.create("pacs-bridge", "service")
    assert keys.authenticate(token) == key
    keys.revoke("pacs-bridge")
    assert keys.authenticate(token) is None
    db.dispose()


def test_audit_chain_detects_edits_and_deletions(pg_url: str) -> None:
    upgrade_database(pg_url)
    db = Database(pg_url)
    log = AuditLog(db)
    for i in range(6):
        log.append(
            actor="admin-key",
            action="model.promote",
            object_type="model_version",
            object_id=str(i),
            details={"reason": "gate passed", "auc": 0.91 + i / 100, "tiny": 1e-7, "big": 1e20},
        )
    assert log.verify().ok and log.verify().checked == 6

    psql(pg_url, 'UPDATE audit_events SET details = \'{"reason": "forced"}\' WHERE id = 3')
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "edited" in (result.reason or "")

    psql(pg_url, "DELETE FROM audit_events WHERE id = 3")
    result = log.verify()
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "missing" in (result.reason or "")
    db.dispose()


def test_two_processes_cannot_fork_the_chain(pg_url: str) -> None:
    upgrade_database(pg_url)
    script = (
        "import sys\n"
        "from radvigil.store import AuditLog, Database\n"
        "log = AuditLog(Database(sys.argv[1]))\n"
        "for i in range(25):\n"
        "    log.append(actor=sys.argv[2], action='x', object_type='y', details={'i': i})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, pg_url, f"p{n}"], stderr=subprocess.PIPE)
        for n in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    db = Database(pg_url)
    result = AuditLog(db).verify()
    assert (result.ok, result.checked) == (True, 50)
    db.dispose()


def test_no_prediction_is_lost_when_postgres_goes_down(pg_cluster: Cluster, tmp_path) -> None:
    upgrade_database(pg_cluster.url)
    db = Database(pg_cluster.url, connect_timeout_s=2)
    store = PredictionStore(db)
    spool = Spool(tmp_path / "spool")
    writer = PredictionWriter(store, spool, max_batch=10, max_wait_s=0.02, retry_interval_s=0.3)
    submitted: list[str] = []
    stop = threading.Event()

    def produce() -> None:  # a steady stream of requests, through the outage and after
        i = 0
        while not stop.is_set():
            item = record(i)
            writer.submit(item)
            submitted.append(item.id)
            i += 1
            time.sleep(0.002)

    with writer:
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(0.5)
        pg_cluster.stop("immediate")
        with pytest.raises(StoreUnavailableError):
            db.check()
        time.sleep(1.0)
        assert writer.flush() is False  # the database is down: records wait in the spool
        assert writer.stats.spooled > 0 and spool.pending()
        pg_cluster.start()
        time.sleep(0.5)
        stop.set()
        producer.join()
        assert writer.flush() is True
    stats = writer.stats
    assert stats.submitted == len(submitted) and stats.rejected == 0
    # A batch whose insert committed as the server died is reported as an outage and spooled;
    # its replay then finds the ids stored (ON CONFLICT DO NOTHING) and counts none of them, so
    # the counters may fall short. The table below is the truth: every id stored exactly once.
    assert stats.written + stats.replayed <= len(submitted)
    with psycopg.connect(pg_cluster.url.replace("+psycopg", "")) as conn:
        query = "SELECT count(*), count(DISTINCT id) FROM predictions"
        total, distinct = conn.execute(query).fetchone()
    assert total == distinct == len(submitted)
    assert sorted(r.id for r in store.list(limit=None)) == sorted(submitted)
    assert not spool.pending()
    db.dispose()


def test_lease_has_one_holder_across_connections(pg_url: str) -> None:
    """Eight racing claims on PostgreSQL (each on its own pooled connection): one winner."""
    from concurrent.futures import ThreadPoolExecutor

    from radvigil.store import LeaseStore

    upgrade_database(pg_url)
    leases = LeaseStore(Database(pg_url))
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: leases.claim("monitor:m", f"w{i}", 60), range(8)))
    assert sum(won) == 1
    holder = leases.holder("monitor:m")
    assert holder is not None and not leases.claim("monitor:m", "late", 60)
    leases.release("monitor:m", holder)
    assert leases.claim("monitor:m", "late", 60)
