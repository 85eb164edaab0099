"""Locust load test of a running radvigil service: POST /v1/predict with real bundled JPEGs.

Locust is in the ``dev`` extra; ``tests/integration/test_locust.py`` runs this file headless
against the real server (``bench/serve_load.py`` measures the same with httpx, and
``bench/stack_load.py`` through nginx). Start a service and make a key first::

    radvigil serve                                   # http://127.0.0.1:8000
    radvigil keys create --name load-test --role service --rate-limit 1000000
    RADVIGIL_API_KEY=rvk_... locust -f bench/locustfile.py --host http://127.0.0.1:8000 \\
        --headless --users 32 --spawn-rate 8 --run-time 60s

Each simulated user posts one image after another with no think time (``constant(0)``), so
``--users`` is the concurrency; locust reports per-request latency percentiles and req/s.
Environment: ``RADVIGIL_API_KEY`` (required), ``RADVIGIL_BENCH_IMAGES`` (how many distinct
bundled test JPEGs to cycle through, default 64).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import HttpUser, constant, task

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled" / "kermany" / "test"


def _images(limit: int) -> list[tuple[str, bytes]]:
    paths = sorted(BUNDLED.glob("*/*.jpg"))[:limit]
    if not paths:
        raise RuntimeError(f"no JPEGs under {BUNDLED}")
    return [(p.name, p.read_bytes()) for p in paths]


IMAGES = _images(int(os.environ.get("RADVIGIL_BENCH_IMAGES", "64")))


class PredictUser(HttpUser):
    """One client posting images to /v1/predict back to back."""

    wait_time = constant(0)

    def on_start(self) -> None:
        token = os.environ.get("RADVIGIL_API_KEY")
        if not token:
            raise RuntimeError("set RADVIGIL_API_KEY to a service-role key")
        self.client.headers["X-API-Key"] = token
        self.images = itertools.cycle(IMAGES)

    @task
    def predict(self) -> None:
        name, data = next(self.images)
        with self.client.post(
            "/v1/predict",
            files={"file": (name, data, "image/jpeg")},
            name="/v1/predict",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif "probabilities" not in response.json():
                response.failure("no probabilities in the response")
