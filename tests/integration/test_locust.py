"""bench/locustfile.py run for real: Locust headless for a few seconds against the real server.

Locust runs as its own process (it monkey-patches the standard library with gevent, which must
not happen inside pytest), against a real uvicorn server with a real registered model, and its
CSV statistics are read back.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radvigil.config import Settings
from radvigil.service.app import create_app
from radvigil.store import KeyStore, PredictionStore
from tests.helpers import REPO, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_locustfile_drives_the_real_service(trained_home, tmp_path: Path) -> None:
    home, _ = trained_home
    app = create_app(Settings(home=tmp_path / "home"), registry=home.registry)
    state = app.state.radvigil
    token, _ = KeyStore(state.db).create("locust", "service", rate_limit=1_000_000)
    locust = Path(sys.executable).parent / "locust"
    with LiveServer(app) as server:
        result = subprocess.run(
            [
                str(locust),
                *("-f", str(REPO / "bench" / "locustfile.py")),
                *("--host", server.url, "--headless"),
                *("--users", "4", "--spawn-rate", "4", "--run-time", "6s"),
                *("--csv", str(tmp_path / "run"), "--only-summary"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "RADVIGIL_API_KEY": token, "RADVIGIL_BENCH_IMAGES": "8"},
            check=False,
        )
        state.writer.flush()
    assert result.returncode == 0, result.stderr[-2000:]
    with (tmp_path / "run_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    predict = rows["/v1/predict"]
    requests, failures = int(predict["Request Count"]), int(predict["Failure Count"])
    assert requests >= 10 and failures == 0, predict
    assert float(predict["95%"]) > 0 and float(predict["Requests/s"]) > 0
    # Every request Locust counted was stored; requests still in flight when Locust stopped its
    # users are answered and stored but not in its statistics.
    assert PredictionStore(state.db).count() >= requests
