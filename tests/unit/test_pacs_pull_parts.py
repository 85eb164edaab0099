"""Pull mode's parts (source settings, pulled record, checkpoint, UID redaction), intake counts."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from radvigil.config import PullSource, Settings
from radvigil.pacs.metrics import IntakeTally
from radvigil.pacs.pull import UidRedactor, redact_library_logs
from radvigil.store import Database, upgrade_database
from radvigil.store.pacs_pull import PullStore
from radvigil.store.pacs_traffic import add_intake_counts, ae_traffic

STUDY_UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"


@pytest.fixture()
def store(tmp_path: Path) -> PullStore:
    db = Database(f"sqlite:///{tmp_path / 'pull.db'}")
    upgrade_database(db)
    return PullStore(db)


def test_sources_are_validated_and_hide_their_password(tmp_path: Path) -> None:
    source = PullSource(name="MAIN-PACS", url="http://pacs/dicom-web", password="s3cret-pw")
    assert source.modalities == ("CR", "DX") and "s3cret-pw" not in repr(source)
    with pytest.raises(ValidationError, match="name"):
        PullSource(name="has space", url="http://pacs/dicom-web")
    with pytest.raises(ValidationError, match="at most 16"):
        PullSource(name="A" * 17, url="http://pacs/dicom-web")
    twice = [{"name": "P", "url": "http://a"}, {"name": "P", "url": "http://b"}]
    with pytest.raises(ValidationError, match="each source needs its own name"):
        Settings(home=tmp_path, dicom_pull_sources=twice)


def test_pulled_instances_are_remembered_per_source(store: PullStore) -> None:
    assert store.pulled("A", []) == set()
    store.mark("A", "k1", "s1", "stored", None)
    store.mark("A", "k1", "s1", "stored", None)  # a second mark of the same instance is a no-op
    store.mark("A", "k2", "s1", "refused", "transfer syntax not decodable")
    assert store.pulled("A", ["k1", "k2", "k3"]) == {"k1", "k2"}
    assert store.pulled("B", ["k1"]) == set()


def test_a_failed_poll_keeps_the_checkpoint_and_notes_the_error(store: PullStore) -> None:
    assert store.checkpoint("A") is None
    store.polled("A", None, "pull source A: http://pacs unreachable (ConnectionError)")
    first = store.checkpoint("A")
    assert first is not None and first.since is None and "unreachable" in (first.last_error or "")
    store.polled("A", date(2026, 12, 6))
    store.polled("A", None, "pull source A: http://pacs answered HTTP 503")
    later = store.checkpoint("A")
    assert later is not None and later.since == date(2026, 12, 6)
    assert later.last_error == "pull source A: http://pacs answered HTTP 503"
    store.polled("A", date(2026, 12, 7))
    assert [(c.source, c.since, c.last_error) for c in store.checkpoints()] == [
        ("A", date(2026, 12, 7), None)
    ]


def test_library_log_records_lose_their_uids_but_keep_addresses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact_library_logs()
    redact_library_logs()  # idempotent: one filter per logger
    web = logging.getLogger("dicomweb_client.web")
    assert sum(isinstance(f, UidRedactor) for f in web.filters) == 1
    caplog.set_level(logging.DEBUG)
    web.info('retrieve instance "%s" of study "%s"', STUDY_UID + ".7", STUDY_UID)
    logging.getLogger("urllib3.connectionpool").debug(
        'http://127.0.0.1:8042 "GET /dicom-web/studies/%s/series HTTP/1.1" 200', STUDY_UID
    )
    assert STUDY_UID not in caplog.text
    assert 'study "<uid>"' in caplog.text and "127.0.0.1:8042" in caplog.text
    assert "/studies/<uid>/series" in caplog.text


def test_intake_tally_drains_and_restores_without_losing_counts(store: PullStore) -> None:
    tally = IntakeTally()
    for outcome in ("stored", "stored", "ignored"):
        tally.count("ORTHANC", outcome)
    drained = tally.drain()
    assert {k: n for k, (n, _) in drained.items()} == {
        ("ORTHANC", "stored"): 2,
        ("ORTHANC", "ignored"): 1,
    }
    assert tally.drain() == {}
    tally.count("ORTHANC", "stored")
    tally.restore(drained)  # the database write failed: counts go back, none lost
    again = tally.drain()
    assert again[("ORTHANC", "stored")][0] == 3
    add_intake_counts(store.db, again)
    add_intake_counts(store.db, {("ORTHANC", "refused"): (1, again[("ORTHANC", "stored")][1])})
    (row,) = ae_traffic(store.db)
    assert (row.received, row.ignored, row.refused_at_intake, row.predicted) == (5, 1, 1, 0)


def test_a_poll_tries_each_request_as_often_as_the_source_says(
    store: PullStore, tmp_path: Path
) -> None:
    """A real HTTP server answering 503: the poll gives up after the source's ``attempts`` (not
    dicomweb-client's default 5 tries over 30 s), the error is clear and the checkpoint stays."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from radvigil.errors import PacsUnavailableError
    from radvigil.pacs.pull import Puller
    from radvigil.pacs.spool import DicomSpool

    hits: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/dicom-web"
        source = PullSource(name="BUSY", url=url, modalities=("CR",), attempts=2, retry_wait_ms=1)
        puller = Puller(source, DicomSpool(tmp_path / "spool"), store, max_bytes=1 << 20)
        with pytest.raises(PacsUnavailableError, match=r"BUSY.*answered HTTP 503 2 times"):
            puller.poll()
    finally:
        server.shutdown()
        server.server_close()
    assert len(hits) == 2 and all(h.startswith("/dicom-web/studies?") for h in hits)
    checkpoint = store.checkpoint("BUSY")
    assert checkpoint is not None and checkpoint.since is None
