"""A champion MLflow alone cannot change: a real `mlflow server`, two uvicorn replicas on one
real PostgreSQL database, a real trained model.

Version 1 is gated (signed gate record) and champion in radvigil's database. Version 2 (the
same graph, registered again, never gated) is made champion straight through MLflow's REST
API: both replicas keep serving version 1, and exactly one alert and one audit record appear,
however many polls and replicas see it. Version 3 is gated, then its ONNX file is replaced in
the artifact store: moved to champion through radvigil itself, it is still refused.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import onnx
import pytest
from PIL import Image as PILImage

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.errors import RegistryError
from radvigil.loop.deployment import CONFLICT_RULE, Deployments
from radvigil.loop.training import run_training
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.stack.processes import free_port
from radvigil.store import AlertStore, AuditLog, Database, KeyStore, upgrade_database
from tests.helpers import LiveServer, make_home, mlflow_client, mlflow_store, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "integration-test-audit-key"
POLL = 0.5


@contextmanager
def _mlflow(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """A real `mlflow server` on loopback; yields its URL and its artifact folder."""
    port, artifacts = free_port(), tmp_path / "server-artifacts"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            mlflow_store(tmp_path / "server.db"),
            "--artifacts-destination",
            str(artifacts),
            "--workers",
            "1",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mlflow-server.log").open("w"),
        env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _healthy(url), 120, "mlflow server did not start")
        yield url, artifacts
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with _mlflow(tmp_path) as started:
        yield started


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition: Callable[[], bool], seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.25)


def _register_copy(registry: Registry, name: str, run_id: str, folder: Path, path: str) -> str:
    """Register the graph in ``folder`` again as a new version, under its own artifact path."""
    mlflow = mlflow_client(registry)
    mlflow.log_artifacts(run_id, str(folder), path)
    uri = mlflow.get_run(run_id).info.artifact_uri
    return str(mlflow.create_model_version(name, f"{uri}/{path}", run_id=run_id).version)


def _png(bundled: Path) -> bytes:
    jpg = sorted((bundled / "kermany" / "test" / "pneumonia").glob("*.jpg"))[0]
    buffer = io.BytesIO()
    PILImage.open(jpg).save(buffer, format="PNG")
    return buffer.getvalue()


def test_mlflow_alone_cannot_change_the_champion(
    mlflow_server, pg_url: str, tmp_path: Path, bundled: Path
) -> None:
    url, artifacts = mlflow_server
    home = make_home(tmp_path / "home", tracking_uri=url)
    outcome = run_training(
        tiny_config(epochs=1, max_train_images=64), home.data_version, home.catalog, home.registry
    )
    name, run_id = outcome.name, outcome.run_id
    v1 = home.registry.load(f"{name}/{outcome.version}")
    # trained against the server and read back from its artifact store, with its lineage
    assert v1.onnx_path.exists() and v1.card.training_data_version == home.data_version
    ungated = _register_copy(home.registry, name, run_id, v1.folder / "model", "model-v2")
    tampered = _register_copy(home.registry, name, run_id, v1.folder / "model", "model-v3")

    db = Database(pg_url)
    upgrade_database(db)
    audit = AuditLog(db, secret=KEY)
    radvigil = Deployments(db, home.registry, audit)
    radvigil.sign(v1, "passed", "integration-test", "tester")  # what `radvigil gate` records
    radvigil.set_alias(name, "champion", v1.version, actor="tester", reason="gated first model")
    token, _ = KeyStore(db).create("clinician", "clinician", rate_limit=10_000)

    with ExitStack() as stack:
        replicas = []
        for index in range(2):
            root = tmp_path / f"replica-{index}"
            settings = Settings(
                home=root,
                database_url=pg_url,
                audit_key=KEY,
                registry_trust="enforce",
                model_poll_seconds=POLL,
                monitor_interval_seconds=0,
                batch_max_wait_ms=2.0,
            )
            registry = Registry(url, root / "mlartifacts", root / "model-cache")
            app = create_app(settings, registry=registry, mounts=[dashboard_mount])
            server = stack.enter_context(LiveServer(app))
            client = stack.enter_context(
                httpx.Client(base_url=server.url, headers={"X-API-Key": token}, timeout=60)
            )
            replicas.append((client, app.state.radvigil))

        def served(client: httpx.Client) -> dict:
            response = client.get("/v1/model")
            assert response.status_code == 200, response.text
            return response.json()

        for client, _ in replicas:
            assert served(client)["champion"]["version"] == v1.version

        # Someone with MLflow access moves @champion to the ungated version, bypassing radvigil.
        moved = httpx.post(
            f"{url}/api/2.0/mlflow/registered-models/alias",
            json={"name": name, "alias": "champion", "version": ungated},
            timeout=10,
        )
        assert moved.status_code == 200, moved.text
        assert home.registry.aliases(name)["champion"] == ungated

        alerts = AlertStore(db)
        _wait(
            lambda: all(served(c)["registry_conflict"] for c, _ in replicas),
            60,
            "the replicas did not see the change made in MLflow",
        )
        time.sleep(6 * POLL)  # more polls on both replicas: still one alert, one audit record
        conflicts = [a for a in alerts.list(model_name=name) if a.rule == CONFLICT_RULE]
        assert len(conflicts) == 1, conflicts
        assert conflicts[0].severity == "critical" and conflicts[0].model_version == v1.version
        assert f"@champion is {ungated} in MLflow, {v1.version} in radvigil" in (
            conflicts[0].message
        )
        [event] = audit.list(action="registry.conflict")
        assert event.object_id == name and event.details["serving"] == v1.version
        for client, state in replicas:
            body = served(client)
            assert body["champion"]["version"] == v1.version
            assert "@champion" in body["registry_conflict"]
            prediction = client.post(
                "/v1/predict", files={"file": ("case.png", _png(bundled), "image/png")}
            )
            assert prediction.status_code == 200, prediction.text
            assert prediction.json()["model_version"] == v1.version
            assert ungated not in state.models._broken | set(state.models._refused)
        dashboard = replicas[0][0]
        with httpx.Client(base_url=str(dashboard.base_url), timeout=60) as browser:
            browser.get("/dashboard/login")
            csrf = browser.cookies["radvigil_login_csrf"]
            browser.post("/dashboard/login", data={"csrf": csrf, "api_key": token})
            page = browser.get("/dashboard/models", follow_redirects=False)
        assert page.status_code == 200
        assert 'id="registry-conflict"' in page.text and "Registry conflict, refused" in page.text

        # Version 3 passes its gate, then its ONNX file is replaced in the artifact store.
        radvigil.sign(home.registry.load(f"{name}/{tampered}"), "passed", "integration", "tester")
        [stored] = artifacts.rglob("model-v3/model.onnx")
        graph = onnx.load(str(stored))
        onnx.helper.set_model_props(graph, {"replaced": "after gating"})
        onnx.save(graph, str(stored))
        radvigil.set_alias(name, "champion", tampered, actor="tester", reason="sanctioned move")

        def refused_everywhere() -> bool:
            return all(
                "changed after gating" in state.models._refused.get(tampered, "")
                for _, state in replicas
            )

        _wait(refused_everywhere, 60, "the replaced model file was not refused")
        for client, state in replicas:
            assert served(client)["champion"]["version"] == v1.version
            assert state.models.last_error and "changed after gating" in state.models.last_error
    db.dispose()


def test_the_registry_client_signs_in_to_mlflow_basic_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's basic-auth app (``--app-name basic-auth``): radvigil's registry passes
    MLFLOW_TRACKING_USERNAME/PASSWORD through, and without them the server refuses it."""
    config = tmp_path / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        "admin_username = admin\n"
        "admin_password = a-long-test-password\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test"}
    with _mlflow(tmp_path, "--app-name", "basic-auth", env=env) as (url, _):
        # the auth app hashes the password (PBKDF2) on every request: slow on busy CI cores
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
        anonymous = Registry(url, tmp_path / "a", tmp_path / "c")
        with pytest.raises(RegistryError, match=r"401|[Uu]nauthori[sz]ed|credentials"):
            anonymous.registered_models()
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a-long-test-password")
        registry = Registry(url, tmp_path / "a", tmp_path / "c")
        mlflow_client(registry).create_registered_model("behind-basic-auth")
        registry.set_model_tag("behind-basic-auth", "radvigil.rollout", '{"mode": "off"}')
        assert [m.name for m in registry.registered_models()] == ["behind-basic-auth"]
        assert registry.model_tags("behind-basic-auth")["radvigil.rollout"] == '{"mode": "off"}'
