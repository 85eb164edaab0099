"""PostgreSQL stops in the middle of a load run against the real server, then comes back:
every prediction the server answered is in the table afterwards, exactly once.

The stopped database is a throwaway cluster (``pg_cluster``), never the shared server.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage

from radvigil.config import Settings
from radvigil.service.app import create_app
from radvigil.store import Database, KeyStore, PredictionStore, upgrade_database
from tests.helpers import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _payloads(bundled: Path, n: int) -> list[bytes]:
    out = []
    for path in sorted((bundled / "kermany" / "test").rglob("*.jpg"))[:n]:
        buffer = io.BytesIO()
        PILImage.open(path).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def test_no_prediction_lost_when_postgres_stops_under_load(
    trained_home, pg_cluster, bundled: Path, tmp_path: Path
) -> None:
    home, _ = trained_home
    db = Database(pg_cluster.url)
    upgrade_database(db)
    settings = Settings(
        home=tmp_path / "home", monitor_interval_seconds=0, database_url=pg_cluster.url
    )
    app = create_app(settings, registry=home.registry, db=db)
    state = app.state.radvigil
    state.writer.retry_interval_s = 0.5
    token = KeyStore(db).create("load", "service", rate_limit=1_000_000)[0]
    payloads = _payloads(bundled, 60)
    answered: list[str] = []
    lock = threading.Lock()

    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:

        def send(i: int) -> None:
            data = payloads[i % len(payloads)]
            response = client.post(
                "/v1/predict",
                headers={"X-API-Key": token},
                files={"file": (f"{i}.png", data, "image/png")},
            )
            assert response.status_code == 200, response.text
            with lock:
                answered.append(response.json()["request_id"])

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, range(60)))  # database up
            state.writer.flush()
            pg_cluster.stop("immediate")
            list(pool.map(send, range(60, 180)))  # database down: answers keep coming
            time.sleep(1.0)
            assert state.writer.spool.pending(), "records should wait in the spool"
            pg_cluster.start()
            list(pool.map(send, range(180, 240)))  # back up
        deadline = time.monotonic() + 60
        while not state.writer.flush(timeout=5):
            assert time.monotonic() < deadline, "spool was not replayed"

    assert len(answered) == 240
    store = PredictionStore(Database(pg_cluster.url))
    assert store.count() == 240
    assert store.existing_ids(answered) == set(answered)
