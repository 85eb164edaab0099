"""A corrupt model version never stops the service: a real registered version's file is
corrupted and promoted; the old champion keeps serving, the poller lives on and follows the
next good promotion, and at start-up a broken champion falls back to ``@previous``."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from radvigil.config import Settings
from radvigil.registry import _fluent_uri, _mlflow
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from tests.helpers import LiveServer, mlflow_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _register_copy(home, outcome, root: Path, corrupt: bool) -> str:
    """A new version of the registered model from a copy of version 1's files."""
    mlflow = _mlflow()
    folder = root / f"copy-{time.monotonic_ns()}"
    with _fluent_uri(home.registry.tracking_uri):
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{outcome.name}/{outcome.version}", dst_path=str(folder)
        )
    if corrupt:
        (folder / "model.onnx").write_bytes(b"\x08\x07garbage, not a protobuf graph" * 100)
    mv = mlflow_client(home.registry).create_model_version(
        outcome.name, source=str(folder), run_id=outcome.run_id
    )
    return str(mv.version)


def _wait(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_corrupt_champion_keeps_the_old_one_and_the_poller_alive(
    trained_home, tmp_path: Path, bundled: Path
) -> None:
    home, outcome = trained_home
    name, registry = outcome.name, home.registry
    broken = _register_copy(home, outcome, tmp_path, corrupt=True)
    good = _register_copy(home, outcome, tmp_path, corrupt=False)
    image = sorted((bundled / "kermany" / "test" / "normal").glob("*.jpg"))[0].read_bytes()
    settings = Settings(home=tmp_path / "svc", model_poll_seconds=0.3)
    app = create_app(settings, registry=registry)
    state = app.state.radvigil
    token = KeyStore(state.db).create("t", "admin", rate_limit=100_000)[0]
    try:
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
            client.headers["X-API-Key"] = token
            registry.set_alias(name, "champion", broken, "test", "promote a corrupt file")
            assert _wait(lambda: state.models.load_failures >= 1)
            time.sleep(1)  # several more polls on the broken version
            assert state.models.champion.version == outcome.version
            assert state.models._thread.is_alive()
            assert f"version {broken}" in (state.models.last_error or "")
            predicted = client.post("/v1/predict", files={"file": ("a.jpg", image)})
            assert predicted.status_code == 200
            assert predicted.json()["model_version"] == outcome.version
            metrics = client.get("/metrics").text
            assert "radvigil_model_load_failures" in metrics
            registry.set_alias(name, "champion", good, "test", "a good version")
            assert _wait(lambda: state.models.champion.version == good)  # still following

        # start-up: the champion cannot load, so the previous champion serves and /ready says so
        registry.set_alias(name, "champion", broken, "test", "broken at start-up")
        registry.set_alias(name, "previous", good, "test", "the one before")
        fresh = create_app(Settings(home=tmp_path / "svc2"), registry=registry)
        token = KeyStore(fresh.state.radvigil.db).create("t", "admin")[0]
        with LiveServer(fresh) as live, httpx.Client(base_url=live.url, timeout=60) as client:
            ready = client.get("/ready", headers={"X-API-Key": token})
            body = ready.json()
            assert ready.status_code == 200 and body["model"] == f"{name}/{good}", body
            assert f"champion version {broken} failed to load" in body["fallback"]
    finally:
        registry.set_alias(name, "champion", outcome.version, "test", "restore the fixture")
        mlflow_client(registry).delete_registered_model_alias(name, "previous")
        shutil.rmtree(tmp_path / "svc", ignore_errors=True)
