"""Drift monitoring beside a real service: real uvicorn, registry, SQLite and PostgreSQL, images,
Evidently, and `radvigil monitor worker` processes (the server itself never runs the monitors).

A scanner that images 20 % brighter must raise drift alerts (image statistics, embedding MMD,
OOD rate) on windows of 100; the same population unshifted must not; an adult PA DICOM must be
flagged as a drifter by the paediatric model's profile.

The clean stream comes from the bundled *train* folder (patients outside the validation split
the profile was built from, same acquisition). Kermany's *test* folder is a different
acquisition batch: its sharpness and low percentiles differ from the reference, so it raises an
image-statistics alert even unshifted (the demo scenario streams it as the site's real change).
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from radvigil.config import Settings, reset_settings
from radvigil.data.io import read_image
from radvigil.data.shifts import apply_shift, get_shift
from radvigil.service.app import create_app
from radvigil.store import AuditLog, KeyStore
from tests.helpers import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WINDOWS_100 = "windows: {size: 100}\n"


@contextmanager
def serve(trained_home, root: Path, **settings: object) -> Iterator[tuple[httpx.Client, dict]]:
    """A live service on ``trained_home``'s registry with windows of 100, and role tokens."""
    home, _ = trained_home
    root.mkdir(parents=True, exist_ok=True)
    (root / "monitoring.yaml").write_text(WINDOWS_100)
    config = Settings(
        home=root,
        monitoring_config=root / "monitoring.yaml",
        batch_max_wait_ms=2.0,
        **settings,
    )
    app = create_app(config, registry=home.registry)
    keys = KeyStore(app.state.radvigil.db)
    # Each image of a batch costs a rate token: the 200-study streams need more than 120/min.
    tokens = {
        r: keys.create(f"{r}-key", r, rate_limit=10_000)[0]
        for r in ("clinician", "admin", "service")
    }
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=600) as client:
        yield client, {**tokens, "state": app.state.radvigil}


def _h(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def studies(bundled: Path, folder: str, *, brightness: float | None = None) -> list[bytes]:
    """200 real images of ``folder`` in a seeded random order, as PNG (optionally brighter)."""
    paths = sorted((bundled / "kermany" / folder).glob("*/*.jpg"))
    random.Random(0).shuffle(paths)
    shift = None if brightness is None else get_shift("brightness", factor=brightness)
    out = []
    for i, path in enumerate(paths[:200]):
        pixels = read_image(path).pixels
        if shift is not None:
            pixels = apply_shift(pixels, shift, seed=i)
        buffer = io.BytesIO()
        PILImage.fromarray(pixels).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def post_all(client: httpx.Client, token: str, payloads: list[bytes]) -> None:
    for start in range(0, len(payloads), 16):
        files = [
            ("files", (f"study-{start + i}.png", data, "image/png"))
            for i, data in enumerate(payloads[start : start + 16])
        ]
        response = client.post("/v1/predict/batch", headers=_h(token), files=files)
        assert response.status_code == 200, response.text


def test_brighter_scanner_raises_drift_alerts(trained_home, bundled, tmp_path, monkeypatch) -> None:
    with serve(trained_home, tmp_path / "svc") as (client, tokens):
        post_all(client, tokens["service"], studies(bundled, "test", brightness=1.2))
        assert client.post("/v1/monitoring/run", headers=_h(tokens["clinician"])).status_code == 403
        run = client.post("/v1/monitoring/run", headers=_h(tokens["admin"]))
        assert run.status_code == 200, run.text
        body = run.json()
        assert [(w["group"], w["size"]) for w in body["windows"]] == [(None, 100), (None, 100)]
        for window in body["windows"]:
            drifted = {r["name"] for r in window["results"] if r["drift"]}
            assert {"image_stats", "mmd", "domain_classifier"} <= drifted
        opened = {a["rule"] for a in body["opened"]}
        assert {"image_stats-drift", "mmd-drift", "ood_rate-drift"} <= opened
        again = client.post("/v1/monitoring/run", headers=_h(tokens["admin"])).json()
        assert again["windows"] == [] and again["opened"] == []

        alerts = client.get(
            "/v1/monitoring/alerts", headers=_h(tokens["service"]), params={"state": "open"}
        ).json()
        mmd = next(a for a in alerts if a["rule"] == "mmd-drift")
        assert mmd["group"] == "all" and mmd["first_window"] < mmd["last_window"]
        path = f"/v1/monitoring/alerts/{mmd['id']}"
        assert client.post(f"{path}/acknowledge", headers=_h(tokens["service"])).status_code == 403
        acked = client.post(f"{path}/acknowledge", headers=_h(tokens["clinician"])).json()
        assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "clinician-key"
        reason = {"reason": "scanner recalibrated by the vendor"}
        forbidden = client.post(f"{path}/resolve", headers=_h(tokens["clinician"]), json=reason)
        assert forbidden.status_code == 403
        done = client.post(f"{path}/resolve", headers=_h(tokens["admin"]), json=reason).json()
        assert done["state"] == "resolved" and done["reason"] == reason["reason"]
        again = client.post(f"{path}/acknowledge", headers=_h(tokens["admin"]))
        assert again.status_code == 400 and "cannot become acknowledged" in again.json()["message"]

        results = client.get(
            "/v1/monitoring/results",
            headers=_h(tokens["service"]),
            params={"detector": "image_stats", "limit": 5},
        ).json()
        assert [r["drift"] for r in results] == [True, True]
        assert "report_path" not in results[0]
        report = client.get(results[0]["report_url"], headers=_h(tokens["service"]))
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
        assert b"Drifted Columns" in report.content
        _another_replica_serves_the_stored_report(
            client, tokens, results[0]["report_url"], report, monkeypatch
        )
        missing = client.get("/v1/monitoring/reports/99999", headers=_h(tokens["service"]))
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"

        metrics = client.get("/metrics", headers=_h(tokens["service"])).text
        assert 'radvigil_monitor_drift{detector="image_stats",group="all"} 1.0' in metrics
        still_open = client.get(
            "/v1/monitoring/alerts", headers=_h(tokens["service"]), params={"state": "open"}
        ).json()
        assert {"image_stats-drift", "ood_rate-drift"} <= {a["rule"] for a in still_open}
        assert f"radvigil_open_alerts {float(len(still_open))}" in metrics  # mmd resolved
        events = AuditLog(tokens["state"].db).list(object_type="alert", limit=None)
        assert {"alert.open", "alert.acknowledge", "alert.resolve"} <= {e.action for e in events}
        _cli_status(trained_home, tmp_path / "svc")


def _another_replica_serves_the_stored_report(client, tokens, url, first, monkeypatch) -> None:
    """A replica whose report folder lacks the file serves the stored copy; it never rebuilds it."""
    import radvigil.loop.monitor_runs as loop_monitoring

    for html in Path(tokens["state"].monitoring.reports_dir).glob("*.html"):
        html.unlink()  # this "replica" never wrote it

    def rebuilt(*_: object) -> None:
        raise AssertionError("the report was rebuilt instead of read from the database")

    with monkeypatch.context() as patch:
        patch.setattr(loop_monitoring, "write_evidently_report", rebuilt)
        again = client.get(url, headers=_h(tokens["admin"]))
    assert again.status_code == 200, again.text
    assert again.content == first.content


def _cli_status(trained_home, root: Path) -> None:
    """``radvigil monitor run|status`` on the service's database and the shared registry."""
    from radvigil.cli import app

    home, _ = trained_home
    env = {
        "RADVIGIL_HOME": str(root),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home.root / 'mlflow.db'}",
        "RADVIGIL_MONITORING_CONFIG": str(root / "monitoring.yaml"),
        "COLUMNS": "250",
    }
    runner = CliRunner()
    reset_settings()
    try:
        ran = runner.invoke(app, ["monitor", "run"], env=env)
        assert ran.exit_code == 0, (ran.stdout, ran.stderr)
        assert "no new complete window yet (windows of 100)" in ran.stdout
        status = runner.invoke(app, ["monitor", "status"], env=env)
        assert status.exit_code == 0, (status.stdout, status.stderr)
    finally:
        reset_settings()
    lines = status.stdout.splitlines()
    assert "chest-pneumonia/1" in status.stdout
    assert any("image_stats" in line and "DRIFT" in line for line in lines)
    assert "alert(s) not resolved" in status.stdout and "ood_rate-drift" in status.stdout


def _worker(home_root: Path, svc: Path, database_url: str, log: Path) -> subprocess.Popen:
    """``radvigil monitor worker --every 1`` in a process of its own, on the service's stores."""
    env = {
        "PYTHONUNBUFFERED": "1",
        **os.environ,
        "RADVIGIL_HOME": str(svc),
        "RADVIGIL_DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{home_root / 'mlflow.db'}",
        "RADVIGIL_MONITORING_CONFIG": str(svc / "monitoring.yaml"),
        "COLUMNS": "250",
    }
    command = [sys.executable, "-m", "radvigil", "monitor", "worker", "--every", "1"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--settle", "0", "--nice", "0"], env=env, stdout=out, stderr=out
        )


def _wait_for(log: Path, text: str, seconds: float = 900) -> None:
    """Wait until a worker has started (imports take minutes on two busy cores)."""
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


def test_same_population_raises_no_alert_and_adult_dicom_is_a_drifter(
    trained_home, bundled, shared_data, tmp_path, pg_url
) -> None:
    """Two monitoring workers (separate processes, as on two replicas) share one PostgreSQL
    database with the service: each window is evaluated and stored once, none by the server."""
    svc = tmp_path / "svc"
    with serve(trained_home, svc, database_url=pg_url) as (client, tokens):
        logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
        workers = [_worker(trained_home[0].root, svc, pg_url, log) for log in logs]
        try:
            for log in logs:
                _wait_for(log, "monitoring worker")
            for worker in workers:  # below serving: only CPU time nothing else wants, on
                # every thread (OpenBLAS's pool starts at numpy import, before the policy is set)
                threads = os.listdir(f"/proc/{worker.pid}/task")
                assert len(threads) > 1
                for tid in threads:
                    assert os.sched_getscheduler(int(tid)) == os.SCHED_IDLE, tid
            post_all(client, tokens["service"], studies(bundled, "train"))
            deadline = time.monotonic() + 600
            results: list[dict] = []
            while time.monotonic() < deadline:  # the workers, not the server, run the monitors
                results = client.get(
                    "/v1/monitoring/results",
                    headers=_h(tokens["service"]),
                    params={"detector": "image_stats"},
                ).json()
                if len(results) == 2:
                    break
                time.sleep(0.5)
            time.sleep(3)  # a few more rounds: a second worker must not add a window
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=120)
            outputs = [log.read_text() for log in logs]
        assert [w.returncode for w in workers] == [0, 0], outputs
        assert all("monitoring worker stopped" in out for out in outputs), outputs
        results = client.get(
            "/v1/monitoring/results",
            headers=_h(tokens["service"]),
            params={"detector": "image_stats"},
        ).json()
        assert len(results) == 2, results
        assert sum(out.count("new windows of chest-pneumonia/1") for out in outputs) <= 2
        assert not any(t.name == "monitoring" for t in threading.enumerate())
        alerts = client.get("/v1/monitoring/alerts", headers=_h(tokens["service"])).json()
        assert [a["rule"] for a in alerts if a["rule"].endswith("-drift")] == []
        metrics = client.get("/metrics", headers=_h(tokens["service"])).text
        assert 'radvigil_monitor_drift{detector="image_stats",group="all"} 0.0' in metrics

        dicom = (shared_data / "dicom" / "RG1_UNCI.dcm").read_bytes()
        response = client.post(
            "/v1/predict",
            headers=_h(tokens["clinician"]),
            files={"file": ("RG1_UNCI.dcm", dicom, "application/dicom")},
        )
        assert response.status_code == 200, response.text
        flags = response.json()["flags"]
        assert flags["drifter"] and flags["out_of_distribution"], flags
        assert flags["ood_score"] > flags["ood_threshold"]
        assert response.json()["routed_to_review"] is True
