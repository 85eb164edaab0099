"""Real training on bundled images and a real MLflow store (SQLite).

Training against a real `mlflow server` is test_registry_trust.py's first step (the version it
trains there is loaded back from the server and served), so it is not repeated here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.errors import RegistryError
from radvigil.loop.training import run_training
from radvigil.model.dataset import load_split
from radvigil.model.engine import OnnxEngine
from radvigil.registry import Registry, Tag
from radvigil.task import load_task
from tests.helpers import make_home, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_registered_version_has_lineage_and_card(trained_home) -> None:
    home, outcome = trained_home
    mv = home.registry.resolve("chest-pneumonia@champion")
    assert mv.version == outcome.version
    assert mv.tags[Tag.DATA_VERSION] == home.data_version
    run = home.registry.run(mv.run_id)
    assert sorted(d.context for d in run.datasets) == ["training", "validation"]
    assert {d.name for d in run.datasets} == {home.data_version}
    assert run.params["backbone"] == "resnet10t"
    assert "val_macro_f1" in run.metrics and "val_ece_after" in run.metrics
    history = home.registry.metric_history(mv.run_id, "val_macro_f1")
    assert [step for step, _ in history] == [1, 2]
    loaded = home.registry.load("chest-pneumonia@champion")
    assert loaded.card.training_data_version == home.data_version
    assert set(loaded.card.thresholds) == {"pneumonia"}
    assert loaded.card.metrics["onnx_parity_max_abs_diff"] < 1e-4


def test_registry_model_reproduces_run_probabilities(trained_home) -> None:
    home, outcome = trained_home
    loaded = home.registry.load("chest-pneumonia@champion")
    version = home.catalog.load(home.data_version)
    val = load_split(version, "val", load_task("chest-pneumonia"), 64)
    probs, _ = OnnxEngine(loaded.onnx_path).predict(list(val.images))
    np.testing.assert_allclose(probs, outcome.result.val_probs, atol=1e-4)


def test_alias_twice_is_idempotent(trained_home) -> None:
    home, outcome = trained_home
    before = len(home.registry.alias_history("chest-pneumonia"))
    assert (
        home.registry.set_alias("chest-pneumonia", "champion", outcome.version, "t", "r") is False
    )
    assert len(home.registry.alias_history("chest-pneumonia")) == before


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    home = make_home(tmp_path / "a")
    cfg = tiny_config(epochs=1, max_train_images=96)
    first = run_training(cfg, home.data_version, home.catalog, home.registry)
    second = run_training(cfg, home.data_version, home.catalog, home.registry)
    assert first.result.history == second.result.history
    np.testing.assert_array_equal(first.result.val_probs, second.result.val_probs)
    assert (first.version, second.version) == ("1", "2")


def test_cli_models_show_prints_lineage(trained_home, monkeypatch: pytest.MonkeyPatch) -> None:
    from radvigil.config import reset_settings

    home, _ = trained_home
    monkeypatch.setenv("RADVIGIL_HOME", str(home.root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_settings()
    result = CliRunner().invoke(app, ["models", "show", "chest-pneumonia@champion"])
    reset_settings()
    assert result.exit_code == 0, result.output
    for text in (home.data_version, "run ", "alias history", "champion -> 1"):
        assert text in result.output
    card = home.registry.load("chest-pneumonia@champion").card
    cuts = ", ".join(f"{f} {c:.3f}" for f, c in sorted(card.thresholds.items()))
    assert f"version: {cuts}" in result.output


def test_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(RegistryError, match="unreachable"):
        Registry("http://127.0.0.1:9", tmp_path, tmp_path)
    assert time.monotonic() - start < 10
