"""The pieces Ray Train and Ray Tune build on, without starting Ray: metrics from summed
confusion matrices, per-rank shards, search-space validation, fast failure on a dead address."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import f1_score, recall_score

from radvigil.errors import ConfigError, ModelError
from radvigil.model.config import load_config
from radvigil.model.distributed import failure_summary, shard_order
from radvigil.model.ray_runtime import ray_session
from radvigil.model.train import confusion, confusion_metrics
from radvigil.model.tuning import apply_overrides, load_space

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60),
    st.integers(1, 4),
)
def test_summed_shard_confusions_give_sklearn_metrics(pairs, world) -> None:
    truth = np.array([t for t, _ in pairs])
    predicted = np.array([p for _, p in pairs])
    logits = np.eye(3)[predicted]
    total = sum(
        confusion(logits[r::world], truth[r::world], 3) for r in range(world)
    )  # what the workers' all-reduce adds up
    metrics = confusion_metrics(total, findings=[1, 2])
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=0)
    )
    assert metrics["accuracy"] == pytest.approx((truth == predicted).mean())
    recalls = recall_score(truth, predicted, labels=[1, 2], average=None, zero_division=0)
    assert metrics["finding_sensitivity"] == pytest.approx(recalls.mean())


@given(st.integers(1, 200), st.integers(1, 8))
def test_every_rank_gets_as_many_items_and_all_items_are_used(n, world) -> None:
    order = np.random.default_rng(n).permutation(n)
    shards = [shard_order(order, r, world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal steps: DDP would hang otherwise
    assert set(np.concatenate(shards)) == set(range(n))
    assert sum(len(s) for s in shards) - n < world  # at most world - 1 repeats


def test_shipped_search_space_is_valid() -> None:
    base = load_config(CONFIGS / "fast.yaml")
    space = load_space(CONFIGS / "tune.yaml", base)
    assert space.metric == "macro_f1"
    assert {"lr", "batch_size", "augment.rotation"} <= set(space.params)


def test_overrides_reach_nested_fields_and_are_validated() -> None:
    base = load_config(CONFIGS / "fast.yaml")
    tuned = apply_overrides(base, {"lr": 0.01, "augment.rotation": 4.0})
    assert tuned.lr == 0.01 and tuned.augment.rotation == 4.0 and tuned.backbone == base.backbone
    with pytest.raises(ConfigError, match="batch_size=0"):
        apply_overrides(base, {"batch_size": 0})
    with pytest.raises(ConfigError, match="not a training config field"):
        apply_overrides(base, {"augment.blur": 1.0})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: {lr: {uniform: [0.1, 0.01]}}", "low must be below high"),
        ("params: {lr: {uniform: [0.1, 0.2], choice: [1]}}", "exactly one of"),
        ("params: {lr: {loguniform: [0, 0.1]}}", "must be positive"),
        ("params: {dropout: {uniform: [0, 0.5]}}", "dropout is not a training config field"),
        ("params: {seed: {choice: [1, 2]}}", "seed cannot be tuned"),
        ("params: {batch_size: {choice: [16, 0]}}", "batch_size=0"),
        ("params: {backbone: {choice: [resnet10t, nonsense_net]}}", "unknown backbone"),
        ("metric: loss\nparams: {lr: {uniform: [0.1, 0.2]}}", "metric"),
        ("params: {}", "params"),
    ],
)
def test_bad_search_spaces_fail_with_one_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_space(path, load_config(CONFIGS / "fast.yaml"))


def test_unreachable_ray_cluster_fails_before_ray_is_asked() -> None:
    import ray

    with pytest.raises(ModelError, match="not reachable"), ray_session("127.0.0.1:1", 1, "test"):
        pass
    assert not ray.is_initialized()  # refused by our own probe: ray.init would retry for minutes
    with pytest.raises(ModelError, match="HOST:PORT"), ray_session("nonsense", 1, "test"):
        pass
    with pytest.raises(ModelError, match="not supported"), ray_session("ray://h:10001", 1, "t"):
        pass


def test_a_failed_ray_run_is_summarised_in_one_line() -> None:
    message = (
        "Training failed due to worker errors:\n[Rank 0,1 Error Snippet]:\n"
        'Traceback (most recent call last):\n  File "x.py", line 8, in loop\n'
        "    raise ValueError('boom')\nValueError: boom in worker\n"
    )
    summary = failure_summary(RuntimeError(message))
    assert "\n" not in summary
    assert summary.startswith("Ray training failed: ValueError: boom in worker")
