"""Results to the RIS through the persistent outbox: FHIR over HTTP and HL7 ORU^R01 over MLLP.

No FHIR server runs here: ``tests/ris.py``'s FhirEndpoint is a small real HTTP server started by
the test that validates each body with fhir.resources and applies conditional create itself.
The MLLP side is the ``hl7`` package's own asyncio server on loopback. The lease test runs two
outboxes over one real PostgreSQL database, each on its own engine, as two listeners would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from radvigil.config import Settings
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.node import running_node, senders_from
from radvigil.pacs.outbox import DEAD_LETTER_RULE, Outbox, RetryPolicy
from radvigil.pacs.spool import DicomSpool
from radvigil.reports import facts_from_prediction
from radvigil.reports.fhir import IDENTIFIER_SYSTEM, bundle_json
from radvigil.reports.hl7 import oru_r01
from radvigil.reports.uids import derived_uid
from radvigil.stack.processes import free_port
from radvigil.store import AlertStore, Database
from radvigil.store.migrate import upgrade_database
from radvigil.store.pacs import InstanceCreate, OutboxCreate, PacsStore
from tests.integration.test_pacs import CANARY, c_store, canary_radiograph, wait_for
from tests.ris import FhirEndpoint, MllpListener

pytestmark = [pytest.mark.integration]

TOKEN = "fhir-test-token-0123456789"


def _facts(prediction_id: str):
    return facts_from_prediction(
        prediction_id,
        "chest-pneumonia",
        "3",
        {"normal": 0.2, "pneumonia": 0.8},
        ["pneumonia"],
        ["pneumonia"],
        {"pneumonia": 0.5},
    )


def _record(store: PacsStore, spool: DicomSpool, prediction_id: str, destination: str) -> None:
    """One predicted instance with its FHIR bundle or ORU^R01 waiting in the outbox."""
    facts = _facts(prediction_id)
    if destination == "fhir":
        kind, payload, suffix = "fhir", bundle_json(facts).encode(), ".json"
    else:
        kind, suffix = "oru", ".hl7"
        payload = oru_r01(facts, datetime(2026, 12, 7, tzinfo=UTC)).encode()
    uid = derived_uid(prediction_id, destination)
    store.record(
        InstanceCreate(
            sop_key=f"sop-{prediction_id}",
            study_key="study",
            model_version="3",
            calling_ae="PACS",
            state="predicted",
            prediction_id=prediction_id,
        ),
        [
            OutboxCreate(
                prediction_id=prediction_id,
                model_name="chest-pneumonia",
                model_version="3",
                kind=kind,
                destination=destination,
                calling_ae="PACS",
                sop_instance_uid=uid,
                file=spool.put_outgoing(uid, payload, suffix),
            )
        ],
    )


def _outbox(db: Database, spool: DicomSpool, settings: Settings, holder: str = "one") -> Outbox:
    return Outbox(
        PacsStore(db),
        spool,
        senders_from(settings),
        RetryPolicy(max_attempts=5, base_s=0.0, max_s=0.0),
        PacsMetrics(CollectorRegistry()),
        AlertStore(db),
        holder=holder,
        batch=2,
    )


@pytest.fixture()
def sqlite_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_database(db)
    return db


def _fhir_settings(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, token: str = TOKEN
) -> Settings:
    secret = tmp_path / "fhir-token"
    secret.write_text(token + "\n")
    monkeypatch.setenv("RADVIGIL_FHIR_TOKEN_FILE", str(secret))  # read like every secret file
    return Settings(home=tmp_path / "home", fhir_url=url, fhir_timeout_seconds=10)


def test_fhir_bundle_is_retried_through_503_then_created_once_and_a_resend_creates_nothing(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = DicomSpool(tmp_path / "spool")
    with FhirEndpoint(TOKEN, unavailable=2) as fhir:
        outbox = _outbox(sqlite_db, spool, _fhir_settings(tmp_path, fhir.url, monkeypatch))
        _record(outbox.store, spool, "req-fhir-1", "fhir")
        payload = spool.outgoing_path(outbox.store.entries()[0].file).read_bytes()
        assert [outbox.deliver_due() for _ in range(3)] == [0, 0, 1]
        (entry,) = outbox.store.entries()
        assert entry.state == "delivered" and entry.attempts == 3 and entry.destination == "fhir"
        assert fhir.statuses == [503, 503, 200]
        created = dict(fhir.created)
        assert len(created) == 2  # the DiagnosticReport and one Observation
        assert next(iter(created)) == (
            f"DiagnosticReport?identifier={IDENTIFIER_SYSTEM}|req-fhir-1"
        )
        report = fhir.bodies[-1]["entry"][0]["resource"]
        assert report["status"] == "preliminary"
        # A re-send after a crash (same built bundle, same conditional create) adds nothing.
        resent = spool.outgoing_path("again.json")
        resent.write_bytes(payload)
        outbox.senders["fhir"].send(resent)
        assert fhir.created == created and fhir.statuses[-1] == 200
        assert fhir.posts["req-fhir-1"] == 4


def test_fhir_refusal_dead_letters_at_once_without_the_servers_text(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = DicomSpool(tmp_path / "spool")
    with FhirEndpoint(TOKEN) as fhir:
        settings = _fhir_settings(tmp_path, fhir.url, monkeypatch, token="a-wrong-token")
        outbox = _outbox(sqlite_db, spool, settings)
        _record(outbox.store, spool, "req-fhir-2", "fhir")
        assert outbox.deliver_due() == 0
        (entry,) = outbox.store.entries()
        assert entry.state == "dead" and entry.attempts == 1
        assert entry.last_error == "FHIR server refused the bundle with 401: login"
        assert "CANARY" not in (entry.last_error or "")
        (alert,) = AlertStore(sqlite_db).list()
        assert alert.rule == DEAD_LETTER_RULE and "to fhir after 1 attempt(s)" in alert.message
        assert fhir.created == {}


def test_fhir_unreachable_is_retried_not_dead_lettered(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = DicomSpool(tmp_path / "spool")
    url = f"http://127.0.0.1:{free_port()}/fhir"  # nothing listens there
    outbox = _outbox(sqlite_db, spool, _fhir_settings(tmp_path, url, monkeypatch))
    _record(outbox.store, spool, "req-fhir-3", "fhir")
    assert outbox.deliver_due() == 0
    (entry,) = outbox.store.entries()
    assert entry.state == "pending" and entry.attempts == 1
    assert entry.last_error == "FHIR server unreachable: ConnectError"


def test_hl7_oru_is_retried_on_ae_and_delivered_on_aa(sqlite_db: Database, tmp_path: Path) -> None:
    spool = DicomSpool(tmp_path / "spool")
    with MllpListener(["AE", "AA"]) as ris:
        settings = Settings(home=tmp_path / "home", hl7_host="127.0.0.1", hl7_port=ris.port)
        outbox = _outbox(sqlite_db, spool, settings)
        _record(outbox.store, spool, "req-hl7-1", "hl7")
        assert [outbox.deliver_due() for _ in range(3)] == [0, 1, 0]
        (entry,) = outbox.store.entries()
        assert entry.state == "delivered" and entry.attempts == 2 and entry.kind == "oru"
        assert len(ris.received) == 2
        message = ris.received[-1]
        assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
        assert str(message.segment("OBR")[25]) == "P"
        assert str(message.segment("MSH")[10]) == "req-hl7-1"


def test_hl7_ar_dead_letters_at_once(sqlite_db: Database, tmp_path: Path) -> None:
    spool = DicomSpool(tmp_path / "spool")
    with MllpListener(["AR"]) as ris:
        settings = Settings(home=tmp_path / "home", hl7_host="127.0.0.1", hl7_port=ris.port)
        outbox = _outbox(sqlite_db, spool, settings)
        _record(outbox.store, spool, "req-hl7-2", "hl7")
        assert outbox.deliver_due() == 0
        (entry,) = outbox.store.entries()
        assert entry.state == "dead" and entry.attempts == 1
        assert entry.last_error == "RIS rejected the ORU^R01 (MSA-1 AR)"
        assert AlertStore(sqlite_db).list()[0].rule == DEAD_LETTER_RULE


def test_two_listeners_share_one_postgres_outbox_and_deliver_each_result_once(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade_database(pg_url)
    spool = DicomSpool(tmp_path / "spool")  # one shared spool, as on one host or a shared volume
    n = 24
    with FhirEndpoint(TOKEN, delay_s=0.02) as fhir:
        settings = _fhir_settings(tmp_path, fhir.url, monkeypatch)
        dbs = [Database(pg_url), Database(pg_url)]
        workers = [_outbox(db, spool, settings, holder=f"listener-{i}") for i, db in enumerate(dbs)]
        for i in range(n):
            _record(workers[0].store, spool, f"req-{i:03d}", "fhir")
        start = threading.Barrier(2)

        def run(outbox: Outbox) -> None:
            start.wait()
            outbox.deliver_due()

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        counts = workers[0].store.counts()
        assert counts == {"pending": 0, "delivered": n, "dead": 0}
        assert sorted(fhir.posts) == [f"req-{i:03d}" for i in range(n)]
        assert set(fhir.posts.values()) == {1}, "a result was sent twice"
        shares = [w.metrics.delivered.labels("fhir")._value.get() for w in workers]
        assert sum(shares) == n and min(shares) > 0, shares  # both listeners took part
        for db in dbs:
            db.dispose()


def test_an_expired_lease_passes_to_another_listener_and_fences_the_first(
    sqlite_db: Database, tmp_path: Path
) -> None:
    spool = DicomSpool(tmp_path / "spool")
    store = PacsStore(sqlite_db)
    for name in ("req-held", "req-free", "req-lease"):
        _record(store, spool, name, "fhir")
    (held,) = store.claim("busy", lease_s=3600, limit=1)
    (free,) = store.claim("other", lease_s=3600, limit=1)  # skips the held row
    assert (held.prediction_id, free.prediction_id) == ("req-held", "req-free")
    (mine,) = store.claim("crashed", lease_s=0.0)  # a lease that has run out at once
    assert mine.prediction_id == "req-lease"
    (taken,) = store.claim("other", lease_s=3600)
    assert taken.id == mine.id and taken.claimed_by == "other"
    assert store.delivered(mine.id, "crashed") is False  # the first holder lost it
    assert store.failed(mine.id, "crashed", "late", None) is False
    assert store.delivered(mine.id, "other") is True
    entry = next(e for e in store.entries() if e.id == mine.id)
    assert entry.state == "delivered" and entry.claimed_by is None


@pytest.mark.slow
def test_a_study_received_by_c_store_reaches_fhir_and_hl7_without_patient_data(
    trained_home, bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener's worker builds the bundle and the ORU^R01 from the real prediction."""
    home, _ = trained_home
    data, study_uid = canary_radiograph(bundled)
    with FhirEndpoint(TOKEN, unavailable=1) as fhir, MllpListener(["AA"]) as ris:
        settings = _fhir_settings(tmp_path, fhir.url, monkeypatch).model_copy(
            update=dict(
                batch_max_wait_ms=2.0,
                dicom_port=free_port(),
                dicom_allowed_aes=["PACS1"],
                dicom_quiet_seconds=0.5,
                hl7_host="127.0.0.1",
                hl7_port=ris.port,
                outbox_backoff_seconds=0.2,
                outbox_backoff_max_seconds=0.5,
            )
        )
        with running_node(settings, home.registry) as node:
            assert c_store(settings.dicom_port, data, calling="PACS1") == 0x0000
            wait_for(lambda: node.store.counts()["delivered"] == 2, what="FHIR + HL7 delivery")
            entries = node.store.entries()
            prediction_id = entries[0].prediction_id
        assert {(e.kind, e.destination) for e in entries} == {("fhir", "fhir"), ("oru", "hl7")}
        assert fhir.statuses == [503, 200] and fhir.posts == {prediction_id: 2}
        (message,) = ris.received
        assert str(message.segment("OBR")[3]) == prediction_id
        sent = json.dumps(fhir.bodies) + str(message)
    for secret in [*CANARY.values(), study_uid]:
        assert secret not in sent


def test_a_restarted_listener_takes_back_its_dead_predecessors_leases(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = DicomSpool(tmp_path / "spool")
    store = PacsStore(sqlite_db)
    for name in ("req-dead", "req-remote", "req-alive"):
        _record(store, spool, name, "fhir")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a real process id that no longer runs (a SIGKILLed listener)
    host = socket.gethostname()[:40].replace(":", "-")
    dead, remote = f"{host}:{gone.pid}:0001", f"elsewhere:{gone.pid}:0002"
    alive = f"{host}:{os.getppid()}:0003"  # pytest's parent: a running process on this host
    for holder in (dead, remote, alive):
        assert len(store.claim(holder, lease_s=3600, limit=1)) == 1
    settings = Settings(home=tmp_path / "home", fhir_url="http://127.0.0.1:9/fhir")
    outbox = _outbox(sqlite_db, spool, settings, holder=f"{host}:{os.getpid()}:0004")
    assert outbox.release_stale_local() == 1
    held = {e.prediction_id: e.claimed_by for e in store.entries()}
    assert held == {"req-dead": None, "req-remote": remote, "req-alive": alive}
