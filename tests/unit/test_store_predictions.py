"""Predictions and feedback on SQLite: idempotent inserts, round trips, filters, labels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from radvigil.errors import NotFoundError
from radvigil.store import (
    Database,
    FeedbackCreate,
    FeedbackStore,
    PredictionRecord,
    PredictionStore,
    upgrade_database,
)

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


def record(i: int = 0, **changes: object) -> PredictionRecord:
    values: dict[str, object] = {
        "created_at": T0 + timedelta(minutes=i),
        "model_name": "chest-3class",
        "model_version": "3",
        "task": "chest-3class",
        "probabilities": {"NORMAL": 0.1, "BACTERIAL": 0.7, "VIRAL": 0.2},
        "predicted_class": "BACTERIAL",
        "findings": ["BACTERIAL"],
        "confidence": 0.7,
        "warnings": ["low_resolution"],
        "image_stats": {"mean": 0.48, "std": 0.21, "width": 1024, "bits": 8},
        "embedding": [0.5, -1.25, 3.0],
        "ood_score": 0.12,
        "latency_ms": 41.5,
        "site": "site-a",
        "view_position": "PA",
        "study_hash": "ab" * 32,
        "routed_to_review": True,
        "review_image": b"\x89PNG fake",
    }
    values.update(changes)
    return PredictionRecord.model_validate(values)


def test_records_round_trip_and_inserts_are_idempotent(db: Database) -> None:
    store = PredictionStore(db, keep_review_images=True)
    first = record()
    assert store.add_many([first, first]) == 1
    assert store.add_many([first, record(1)]) == 1
    assert store.add(first) is False
    assert store.count() == 2

    stored = store.get(first.id, with_image=True)
    assert stored == first
    assert stored.created_at.tzinfo is not None
    assert store.get(first.id).review_image is None  # images are read only on request


def test_add_new_reports_exactly_the_ids_it_stored(db: Database) -> None:
    store = PredictionStore(db)
    a, b, c = record(0, id="a"), record(1, id="b"), record(2, id="c")
    assert sorted(store.add_new([a, b])) == ["a", "b"]
    assert store.add_new([a, c, c]) == ["c"]
    assert store.add_new([]) == []
    assert store.existing_ids(["a", "c", "zzz"]) == {"a", "c"}
    assert store.existing_ids([]) == set()


def test_review_images_are_dropped_unless_enabled(db: Database) -> None:
    store = PredictionStore(db)
    store.add(record())
    (stored,) = store.list()
    assert store.get(stored.id, with_image=True).review_image is None


def test_embedding_is_stored_as_float32(db: Database) -> None:
    store = PredictionStore(db)
    item = record(embedding=[0.1, 0.2])
    store.add(item)
    assert store.get(item.id).embedding == pytest.approx([0.1, 0.2], rel=1e-6)


def test_list_and_count_filter(db: Database) -> None:
    store = PredictionStore(db)
    store.add_many(
        [
            record(0),
            record(1, model_version="4", served_by="challenger"),
            record(2, routed_to_review=False),
            record(3, served_by="shadow", shadow_of="req-1"),
        ]
    )
    assert store.count() == 4
    assert store.count(model_version="4") == 1
    assert store.count(routed_to_review=False) == 1
    assert [r.served_by for r in store.list(served_by="shadow")] == ["shadow"]
    window = store.list(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert [r.created_at.minute for r in window] == [31, 32]
    newest = store.list(limit=2, newest_first=True)
    assert [r.created_at.minute for r in newest] == [33, 32]
    assert store.list(limit=2, offset=3) == [store.list()[3]]


def test_unknown_prediction_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError, match="no prediction with request id 'nope'"):
        PredictionStore(db).get("nope")


def test_records_refuse_nan_and_bad_ids() -> None:
    with pytest.raises(ValidationError, match="finite"):
        record(confidence=float("nan"))
    with pytest.raises(ValidationError, match="pattern"):
        record(id="a b")


def test_feedback_labels_latest_wins(db: Database) -> None:
    PredictionStore(db).add_many([record(0, id="r0"), record(1, id="r1", model_version="4")])
    feedback = FeedbackStore(db)
    first = feedback.add(FeedbackCreate(prediction_id="r0", label="VIRAL"), reviewer="dr-a")
    feedback.add(
        FeedbackCreate(prediction_id="r0", label="NORMAL", comment="second read"), reviewer="dr-b"
    )
    feedback.add(FeedbackCreate(prediction_id="r1", label="VIRAL"), reviewer="dr-a")

    assert first.reviewer == "dr-a" and first.id == 1
    assert [f.label for f in feedback.list(prediction_id="r0")] == ["VIRAL", "NORMAL"]
    assert feedback.latest_labels() == {"r0": "NORMAL", "r1": "VIRAL"}
    assert feedback.latest_labels(model_version="4") == {"r1": "VIRAL"}
    assert feedback.latest_labels(since=T0 + timedelta(minutes=1)) == {"r1": "VIRAL"}


def test_feedback_for_unknown_prediction_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError, match="'missing'"):
        FeedbackStore(db).add(FeedbackCreate(prediction_id="missing", label="x"), reviewer="r")


def test_keys_place_predictions_in_time_order_and_can_keep_only_the_labelled(
    db: Database,
) -> None:
    """The late-label look-back counts labels from the labelled keys only, then loads a
    window's every key when it judges that window again."""
    store = PredictionStore(db)
    store.add_many([record(i, id=f"r{i}", served_by="champion") for i in (3, 0, 2, 1)])
    FeedbackStore(db).add(FeedbackCreate(prediction_id="r2", label="VIRAL"), reviewer="dr-a")
    span = {
        "since": T0,
        "until": T0 + timedelta(minutes=3),
        "model_name": "chest-3class",
        "model_version": "3",
        "served_by": "champion",
    }
    assert [k.id for k in store.keys(**span)] == ["r0", "r1", "r2"]  # [since, until), by time
    assert [k.id for k in store.keys(**span, labelled_only=True)] == ["r2"]
