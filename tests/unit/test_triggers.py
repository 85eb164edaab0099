"""Retraining triggers fire for the right reasons and explain themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radvigil.errors import ConfigError
from radvigil.loop.triggers import TriggerFacts, TriggerPolicy, evaluate_triggers, load_policy

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def _fired(policy: TriggerPolicy, facts: TriggerFacts) -> dict[str, bool]:
    return {r.name: r.fired for r in evaluate_triggers(policy, facts, NOW)}


def test_nothing_fires_on_a_quiet_week() -> None:
    facts = TriggerFacts(
        labelled_drifters=3,
        drift_streaks={"image_stats": 1},
        labelled_positives={"pneumonia": 10},
        labelled_sensitivity={"pneumonia": 0.5},
    )
    assert _fired(TriggerPolicy(), facts) == {
        "labelled_drifters": False,
        "drift": False,
        "sensitivity": False,
    }


def test_each_trigger_fires_on_its_own_fact() -> None:
    policy = TriggerPolicy(schedule_days=30)
    facts = TriggerFacts(
        labelled_drifters=50,
        drift_streaks={"image_stats": 2},
        labelled_positives={"pneumonia": 40},
        labelled_sensitivity={"pneumonia": 0.85},
        champion_created=NOW - timedelta(days=31),
    )
    assert all(_fired(policy, facts).values())
    reasons = {r.name: r.reason for r in evaluate_triggers(policy, facts, NOW)}
    assert reasons["sensitivity"].startswith("labelled sensitivity for pneumonia 0.850 on 40")
    assert reasons["labelled_drifters"] == "50 labelled drifters (fires at 50)"


def test_absent_keys_disable_triggers(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("labelled_drifters: 10\ndrift: null\nsensitivity: null\n")
    results = evaluate_triggers(load_policy(path), TriggerFacts(labelled_drifters=12), NOW)
    assert [(r.name, r.fired) for r in results] == [("labelled_drifters", True)]


def test_bad_policy_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("labelled_drifter: 10\n")
    with pytest.raises(ConfigError, match="labelled_drifter: Extra inputs are not permitted"):
        load_policy(path)
