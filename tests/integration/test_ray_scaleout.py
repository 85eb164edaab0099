"""Ray Train (``train --backend ray``) and Ray Tune + Optuna (``tune``) for real: a local Ray
instance with 2 CPUs, real bundled images, the real CLI and a real MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import Settings
from radvigil.model.config import load_config
from radvigil.registry import Registry, Tag
from radvigil.stack.processes import free_port
from tests.helpers import REPO, mlflow_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]
runner = CliRunner()

TINY = """\
task: chest-pneumonia
backbone: resnet10t
input_size: 64
epochs: {epochs}
batch_size: 32
lr: 0.003
patience: 3
max_train_images: 160
seed: 7
"""


RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture()
def ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token file in the user's home and no usage statistics for throwaway instances."""
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A real Ray cluster head (``ray start --head``, 2 CPUs) in its own process group."""
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env={**os.environ, **RAY_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert head.poll() is None, "ray start --head exited"
            time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not open its port in 90 s")
        time.sleep(3)  # the raylet registers after the GCS port opens
        yield f"127.0.0.1:{port}"
    finally:
        # only this cluster's processes (its own session), never another Ray on the machine
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)


@pytest.fixture()
def data_home(home: Settings, tmp_path: Path) -> Settings:
    result = runner.invoke(app, ["data", "import", str(REPO / "data/bundled/manifest.csv")])
    assert result.exit_code == 0, result.output
    return home


def _config(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(epochs=epochs))
    return path


def _registry(home: Settings) -> Registry:
    return Registry(home.resolved_tracking_uri, home.artifacts_dir, home.home_dir / "model-cache")


def test_ray_train_on_a_cluster_registers_a_version_with_per_epoch_metrics(
    ray_env, ray_cluster: str, data_home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster)  # as a user on a cluster node would
    args = ["train", "--config", str(_config(tmp_path, 2)), "--backend", "ray", "--workers", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ray, 2 workers" in result.stdout
    name, version = result.stdout.strip().splitlines()[-1].split("/")
    reg = _registry(data_home)
    mv = reg.resolve(f"{name}/{version}")
    run = reg.run(mv.run_id)
    assert run.params["backend"] == "ray" and run.params["ray.workers"] == "2"
    history = reg.metric_history(mv.run_id, "val_macro_f1")
    assert [step for step, _ in history] == [1, 2]  # each epoch reported, none lost or None
    assert all(0 <= value <= 1 for _, value in history)
    # the checkpoint Ray kept is where the run says, under RADVIGIL_HOME/ray
    ray_run = Path(run.tags[Tag.RAY_RUN])
    assert ray_run.parent == data_home.home_dir / "ray"
    assert list(ray_run.glob("checkpoint_*/best.pt"))
    loaded = reg.load(f"{name}/{version}")
    assert loaded.card.metrics["onnx_parity_max_abs_diff"] < 1e-4
    assert set(loaded.card.thresholds) == {"pneumonia"}


def test_too_many_workers_fails_with_one_message(
    ray_env, ray_cluster: str, data_home: Settings, tmp_path: Path
) -> None:
    args = ["train", "--config", str(_config(tmp_path, 1)), "--backend", "ray", "--workers", "3"]
    result = runner.invoke(app, [*args, "--ray-address", ray_cluster])
    assert result.exit_code == 2
    assert "--workers 3 needs 3 CPUs but the Ray cluster has 2" in result.stderr


def test_tune_on_a_local_instance_logs_nested_trials_and_writes_a_trainable_best_config(
    ray_env, data_home: Settings, tmp_path: Path
) -> None:
    """No address: radvigil starts (and stops) a local Ray instance sized to this machine."""
    space = tmp_path / "space.yaml"
    space.write_text(
        "metric: macro_f1\ngrace_epochs: 1\n"
        "params:\n  lr: {loguniform: [0.001, 0.01]}\n  batch_size: {choice: [16, 32]}\n"
    )
    out = tmp_path / "best.yaml"
    args = ["tune", "--config", str(_config(tmp_path, 2)), "--space", str(space)]
    result = runner.invoke(app, [*args, "--trials", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 trials, best by validation macro_f1" in result.stdout

    best = load_config(out)  # a valid training config, within the space
    assert 0.001 <= best.lr <= 0.01 and best.batch_size in (16, 32)
    assert best.backbone == "resnet10t" and best.epochs == 2
    header = out.read_text().splitlines()[0]
    assert header.startswith("# Best of 2 trials by validation macro_f1")

    reg = _registry(data_home)
    runs = mlflow_client(reg).search_runs([reg.experiment_id("chest-pneumonia")])
    parent = next(r for r in runs if r.data.tags.get("radvigil.kind") == "tuning")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    trial_best = [c.data.metrics["best_val_macro_f1"] for c in children]
    assert parent.data.metrics["best_val_macro_f1"] == pytest.approx(max(trial_best))
    chosen = yaml.safe_load(out.read_text())
    winner = next(
        c for c in children if c.info.run_name == f"trial-{parent.data.tags['radvigil.best_trial']}"
    )
    assert float(winner.data.params["lr"]) == pytest.approx(chosen["lr"])
    assert all(len(reg.metric_history(c.info.run_id, "val_macro_f1")) >= 1 for c in children)
