"""Late labels reach the labelled monitors: stored windows are judged again once labels arrive,
at the served operating threshold, on a real SQLite store with real PneumoniaMNIST pixels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from radvigil.loop.monitor_runs import MonitoringStores, run_monitors
from radvigil.monitoring import ReferenceProfile, monitor_config_from_dict
from radvigil.store import Database, FeedbackCreate, upgrade_database
from tests.unit.monitoring_data import split, stand_in
from tests.unit.test_monitoring_runner import T0, store_predictions

CONFIG = monitor_config_from_dict(
    {
        "windows": {"size": 50, "group_by": None},
        "detectors": {"image_stats": {}, "performance": {"min_labels": 20}, "concept": {}},
        "alerts": [{"detector": "performance", "consecutive": 1, "severity": "critical"}],
    }
)
THRESHOLD = 0.9  # far from argmax's 0.5, so the two decisions differ


@pytest.fixture(scope="module")
def pool() -> tuple[ReferenceProfile, np.ndarray]:
    reference, held_out = split(400, seed=3)
    return stand_in().profile(reference), held_out


@pytest.fixture()
def stores(tmp_path: Path) -> Iterator[MonitoringStores]:
    db = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(db)
    yield MonitoringStores.from_db(db)
    db.dispose()


def _run(stores, profile):
    return run_monitors(
        stores,
        profile,
        "m",
        "1",
        CONFIG,
        T0 + timedelta(days=1),
        thresholds={"pneumonia": THRESHOLD},
    )


def _performance(stores) -> list:
    rows = stores.results.list(model_name="m", detector="performance", newest_first=False)
    return sorted(rows, key=lambda r: r.window_start)


def test_labels_that_arrive_later_are_judged_at_the_served_threshold(stores, pool) -> None:
    profile, held_out = pool
    records = store_predictions(stores, profile, held_out[:100], start=0, sites=["A"])
    first = _run(stores, profile)
    assert len(first.windows) == 2 and first.relabelled == []
    assert all("0 labelled cases" in (r.skipped or "") for r in _performance(stores))

    # Clinicians label 40 cases of each window, each the opposite of what was served.
    window = records[:50]
    for record in [*window[:40], *records[50:90]]:
        served_positive = record.probabilities["pneumonia"] >= THRESHOLD
        label = "normal" if served_positive else "pneumonia"
        stores.feedback.add(FeedbackCreate(prediction_id=record.id, label=label), reviewer="dr")
    second = _run(stores, profile)
    assert second.windows == [] and len(second.relabelled) == 2
    first_window, later_window = _performance(stores)
    assert later_window.skipped is None and first_window.skipped is None
    assert first_window.details["labels_at_run"] == 40
    truth = np.array([r.probabilities["pneumonia"] < THRESHOLD for r in window[:40]])
    decided = ~truth  # every served decision was wrong
    sensitivity = first_window.details["sensitivity"]
    assert sensitivity["n"] == int(truth.sum())
    assert sensitivity["value"] == (decided & truth).sum() / truth.sum() == 0.0
    assert first_window.drift
    assert {(a.rule, a.detector) for a in second.opened} == {("performance-drift", "performance")}

    assert _run(stores, profile).relabelled == []  # no new labels: nothing judged again
