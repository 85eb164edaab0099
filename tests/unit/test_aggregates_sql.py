"""Aggregates computed by SQLite: traffic buckets (percentiles equal NumPy's, the cost cap)
and the performance page's labelled outcomes (latest label wins, shadow rows left out)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from radvigil.dashboard.performance import accuracy_chart, rates
from radvigil.errors import InputError
from radvigil.loop.retrain import labelled_drifters
from radvigil.service.traffic import MAX_BUCKETS, traffic
from radvigil.store import (
    Database,
    FeedbackCreate,
    FeedbackStore,
    PredictionStore,
    upgrade_database,
)
from radvigil.store.aggregates import labelled_outcomes
from tests.unit.test_store_predictions import record

NOW = datetime(2026, 1, 6, 0, 0, tzinfo=UTC)


@pytest.fixture()
def predictions(tmp_path: Path) -> Iterator[PredictionStore]:
    db = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(db)
    yield PredictionStore(db)
    db.dispose()


def _store(store: PredictionStore, times: list[datetime], latencies: list[float]) -> None:
    store.add_many(
        [
            record(0, id=f"r{i}", created_at=at, latency_ms=ms)
            for i, (at, ms) in enumerate(zip(times, latencies, strict=True))
        ]
    )


def test_buckets_count_and_take_numpy_percentiles_with_empty_buckets(predictions) -> None:
    t0 = NOW - timedelta(minutes=4)
    latencies = [10.0, 30.0, 12.5, 7.0, 99.0]
    times = [t0 + timedelta(seconds=s) for s in (1, 5, 20, 125, 130)]
    _store(predictions, times, latencies)
    predictions.add(record(0, id="shadow", created_at=t0, served_by="shadow", shadow_of="r0"))
    out = traffic(predictions, hours=4 / 60, bucket_seconds=60, now=NOW)
    assert [b.start for b in out.buckets] == [t0 + timedelta(minutes=m) for m in range(4)]
    assert [b.count for b in out.buckets] == [3, 0, 2, 0]
    assert out.total == 5  # the shadow row is not traffic
    first = out.buckets[0]
    for got, q in zip(
        (first.latency_p50_ms, first.latency_p95_ms, first.latency_p99_ms),
        (50, 95, 99),
        strict=True,
    ):
        assert got == pytest.approx(round(float(np.percentile(latencies[:3], q)), 2))
    assert out.buckets[1].latency_p50_ms is None
    assert out.buckets[2].latency_p95_ms == pytest.approx(np.percentile([7.0, 99.0], 95), abs=0.01)


def test_without_a_width_the_range_starts_at_the_first_prediction(predictions) -> None:
    _store(predictions, [NOW - timedelta(minutes=20), NOW - timedelta(minutes=1)], [5.0, 6.0])
    out = traffic(predictions, hours=24, now=NOW)
    assert out.bucket_seconds == 60  # 20 minutes in about 30 buckets
    assert out.total == 2 and len(out.buckets) <= 30


def test_a_month_at_one_second_is_refused_before_any_query_and_costs_no_memory(
    predictions,
) -> None:
    _store(predictions, [NOW - timedelta(hours=h) for h in range(1, 745, 3)], [5.0] * 248)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="2,678,400 buckets of 1 s asked for; at most"):
            traffic(predictions, hours=744, bucket_seconds=1, now=NOW)
        # the widest allowed answer: a month at 10-minute buckets
        out = traffic(predictions, hours=744, bucket_seconds=600, now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out.buckets) <= MAX_BUCKETS and out.total == 248
    assert peak < 50 * 2**20


def test_performance_counts_come_from_sql_with_the_latest_label(predictions) -> None:
    days = [NOW - timedelta(days=d, hours=1) for d in (3, 3, 2, 1, 1)]
    predicted = ["BACTERIAL", "NORMAL", "BACTERIAL", "VIRAL", "BACTERIAL"]
    predictions.add_many(
        [
            record(0, id=f"p{i}", created_at=at, predicted_class=cls)
            for i, (at, cls) in enumerate(zip(days, predicted, strict=True))
        ]
    )
    predictions.add(record(0, id="s", created_at=days[0], served_by="shadow", shadow_of="p0"))
    feedback = FeedbackStore(predictions.db)
    labels = [("p0", "NORMAL"), ("p0", "BACTERIAL"), ("p1", "NORMAL"), ("p2", "VIRAL")]
    labels += [("p3", "VIRAL"), ("s", "NORMAL")]
    for pid, label in labels:  # p0 is corrected: its later label wins
        feedback.add(FeedbackCreate(prediction_id=pid, label=label), reviewer="dr")
    cases = labelled_outcomes(predictions.db, model_version="3")
    assert sum(c.count for c in cases) == 4  # p4 unlabelled, the shadow row left out
    found = {name: (r.hits, r.total) for name, r in rates(cases, ["BACTERIAL"]).items()}
    assert found == {
        "accuracy": (3, 4),
        "sensitivity (BACTERIAL)": (1, 1),
        "specificity (BACTERIAL)": (2, 3),
    }
    chart = accuracy_chart(predictions.db, "3")
    assert chart is not None
    bars = next(d for d in chart["data"]["datasets"] if d["label"] == "labelled cases")
    assert sum(bars["data"]) == 4 and len(bars["data"]) == 3  # one bar per labelled day


def test_a_first_day_of_labels_still_draws_an_accuracy_line(predictions) -> None:
    """All labels on one day: the daily rollup would give one point (no line), so the chart
    counts that day's rows in finer buckets instead."""
    start = NOW.replace(hour=2, minute=0, second=0, microsecond=0)
    times = [start + timedelta(minutes=m) for m in (0, 5, 40, 90, 200)]
    predictions.add_many(
        [
            record(0, id=f"d{i}", created_at=at, predicted_class="NORMAL")
            for i, at in enumerate(times)
        ]
    )
    feedback = FeedbackStore(predictions.db)
    for i, label in enumerate(["NORMAL", "NORMAL", "VIRAL", "NORMAL", "NORMAL"]):
        feedback.add(FeedbackCreate(prediction_id=f"d{i}", label=label), reviewer="dr")
    chart = accuracy_chart(predictions.db, "3")
    assert chart is not None
    bars = next(d for d in chart["data"]["datasets"] if d["label"] == "labelled cases")
    assert sum(bars["data"]) == 5 and len(bars["data"]) >= 2


def test_the_retraining_set_is_selected_by_sql_with_the_latest_label(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'retrain.db'}")
    upgrade_database(db)
    store = PredictionStore(db, keep_review_images=True)
    image = b"\x89PNG fake bytes"
    store.add_many(
        [
            record(0, id="drifter", routed_to_review=True, review_image=image),
            record(1, id="no-image", routed_to_review=True, review_image=None),
            record(2, id="calm", routed_to_review=False, review_image=image),
            record(3, id="unlabelled", routed_to_review=True, review_image=image),
            record(4, id="budgeted", routed_to_review=False, review_image=image),
        ]
    )
    feedback = FeedbackStore(db)
    for pid, label in [("drifter", "NORMAL"), ("drifter", "VIRAL"), ("no-image", "NORMAL")]:
        feedback.add(FeedbackCreate(prediction_id=pid, label=label), reviewer="dr")
    feedback.add(FeedbackCreate(prediction_id="calm", label="NORMAL"), reviewer="dr")
    # not routed, but a site's budgeted queue offered it: a clinician was asked for this label
    budgeted = FeedbackCreate(prediction_id="budgeted", label="NORMAL", policy="combined")
    feedback.add(budgeted, reviewer="dr")
    cases = labelled_drifters(store, feedback)
    assert sorted((c.prediction_id, c.label, c.png) for c in cases) == [
        ("budgeted", "NORMAL", image),
        ("drifter", "VIRAL", image),
    ]
    db.dispose()


def test_latest_labels_can_be_asked_for_a_few_predictions_only(predictions) -> None:
    predictions.add_many([record(i, id=f"q{i}") for i in range(4)])
    feedback = FeedbackStore(predictions.db)
    for pid, label in [("q0", "NORMAL"), ("q0", "VIRAL"), ("q1", "NORMAL"), ("q3", "VIRAL")]:
        feedback.add(FeedbackCreate(prediction_id=pid, label=label), reviewer="dr")
    assert feedback.latest_labels(prediction_ids=["q0", "q2", "q3"]) == {
        "q0": "VIRAL",
        "q3": "VIRAL",
    }
    assert feedback.latest_labels(prediction_ids=[]) == {}
    assert len(feedback.latest_labels()) == 3
