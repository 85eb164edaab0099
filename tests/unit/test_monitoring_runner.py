"""The monitoring runner on a real SQLite store with real PneumoniaMNIST pixels.

Predictions are stored the way the service stores them (reduced embedding, probabilities, image
statistics, site); the embedding and probabilities come from the stand-in model of
``monitoring_data``. Checks: windows overall and per site, idempotent re-runs, alerts that open
on a brightness shift and resolve on clean windows, labels from feedback, and the webhook.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from radvigil.loop.monitor_runs import MonitoringStores, post_webhook, run_monitors
from radvigil.loop.monitor_windows import window_data
from radvigil.monitoring import ReferenceProfile, image_stats, monitor_config_from_dict
from radvigil.store import (
    Database,
    FeedbackCreate,
    PredictionRecord,
    PredictionStore,
    upgrade_database,
)
from tests.unit.monitoring_data import CLASSES, brighten, split, stand_in

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
CONFIG = monitor_config_from_dict(
    {
        "windows": {"size": 50, "group_by": "site", "freq": "1h", "min_size": 20},
        "detectors": {"image_stats": {}, "mmd": {}, "ood_rate": {}},
        "alerts": [
            {"detector": "image_stats", "consecutive": 1, "severity": "warning"},
            {"detector": "mmd", "consecutive": 2, "severity": "warning"},
        ],
    }
)


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


def store_predictions(
    stores: MonitoringStores,
    profile: ReferenceProfile,
    index: np.ndarray,
    *,
    start: int,
    sites: list[str],
    shift: bool = False,
    version: str = "1",
    served_by: str = "champion",
) -> list[PredictionRecord]:
    """Predictions for the pool rows at ``index``, one per minute from minute ``start``."""
    model = stand_in()
    pixels = model.images[index]
    if shift:
        pixels = brighten(pixels)
    reduced = profile.projection.reduce(model.embed(pixels))
    probs = model.probs(pixels)
    records = [
        PredictionRecord(
            created_at=T0 + timedelta(minutes=start + i),
            model_name="m",
            model_version=version,
            task="chest-pneumonia",
            probabilities=dict(zip(CLASSES, map(float, probs[i]), strict=True)),
            predicted_class=CLASSES[int(probs[i].argmax())],
            confidence=float(probs[i].max()),
            image_stats=image_stats(pixels[i]),
            embedding=[float(v) for v in reduced[i]],
            latency_ms=5.0,
            site=sites[i % len(sites)],
            served_by=served_by,
        )
        for i in range(len(index))
    ]
    stores.predictions.add_many(records)
    return records


def run(stores: MonitoringStores, profile: ReferenceProfile, **kwargs: object):
    return run_monitors(stores, profile, "m", "1", CONFIG, T0 + timedelta(days=1), **kwargs)


def test_windows_alerts_and_idempotence(stores, pool) -> None:
    profile, held_out = pool
    store_predictions(stores, profile, held_out[:120], start=0, sites=["A", "B"])
    first = run(stores, profile)
    assert sorted((w.group or "all", w.size) for w in first.windows) == [
        ("all", 50),
        ("all", 50),
        ("site=A", 50),
        ("site=B", 50),
    ]
    assert all(len(ids) == 3 for ids in first.result_ids)
    assert first.opened == []
    assert run(stores, profile).windows == []  # nothing new: nothing evaluated twice

    # A brighter scanner at site A: 20 + 100 rows overall, 10 + 100 at site A.
    store_predictions(stores, profile, held_out[120:220], start=200, sites=["A"], shift=True)
    second = run(stores, profile)
    assert sorted((w.group or "all") for w in second.windows) == ["all", "all", "site=A", "site=A"]
    opened = {(a.rule, a.group) for a in second.opened}
    assert {("image_stats-drift", "all"), ("image_stats-drift", "site=A")} <= opened
    alert = next(a for a in second.opened if a.group == "site=A" and a.detector == "image_stats")
    last = stores.results.get(alert.last_window)
    assert (last.detector, last.group, last.drift) == ("image_stats", "site=A", True)
    assert alert.message.startswith("image_stats flagged drift on site=A")

    # Site B recovers the overall windows; site A's alert stays until site A is clean again.
    store_predictions(stores, profile, held_out[220:370], start=400, sites=["B"])
    third = run(stores, profile)
    resolved = {(a.rule, a.group) for a in third.resolved}
    assert ("image_stats-drift", "all") in resolved
    assert ("image_stats-drift", "site=A") not in resolved
    active = {(a.rule, a.group) for a in stores.alerts.list(active=True)}
    assert ("image_stats-drift", "site=A") in active
    assert all(a.resolved_by == "monitor" for a in third.resolved)


def test_other_versions_and_shadow_rows_are_not_monitored(stores, pool) -> None:
    profile, held_out = pool
    store_predictions(stores, profile, held_out[:60], start=0, sites=["A"], version="2")
    store_predictions(stores, profile, held_out[60:120], start=0, sites=["A"], served_by="shadow")
    assert run(stores, profile).windows == []


def test_time_windows_cover_only_ended_periods(stores, pool) -> None:
    profile, held_out = pool
    store_predictions(stores, profile, held_out[:150], start=0, sites=["A"])  # 2.5 hours
    now = T0 + timedelta(hours=2, minutes=40)
    done = run_monitors(stores, profile, "m", "1", CONFIG, now, kind="time")
    overall = [w for w in done.windows if w.group is None]
    assert [(w.start.hour, w.end.hour, w.size) for w in overall] == [(8, 9, 60), (9, 10, 60)]
    later = run_monitors(stores, profile, "m", "1", CONFIG, T0 + timedelta(hours=4), kind="time")
    assert [(w.start.hour, w.size) for w in later.windows if w.group is None] == [(10, 30)]


def test_window_data_takes_labels_from_feedback(stores, pool) -> None:
    profile, held_out = pool
    records = store_predictions(stores, profile, held_out[:4], start=0, sites=["A", "B"])
    stores.feedback.add(
        FeedbackCreate(prediction_id=records[1].id, label="pneumonia"), reviewer="dr-lee"
    )
    data = window_data(records, profile, stores.feedback.latest_labels(model_version="1"))
    assert data.labels.tolist() == [-1, 1, -1, -1]
    assert data.embeddings.shape == (4, profile.projection.n_components)
    assert data.metadata["site"].tolist() == ["A", "B", "A", "B"]
    assert list(data.stats.columns) == list(profile.reference.stats.columns)


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_new_alerts_go_to_the_webhook(stores, pool, caplog) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        profile, held_out = pool
        store_predictions(stores, profile, held_out[:100], start=0, sites=["A"], shift=True)
        url = f"http://127.0.0.1:{server.server_port}/hook"
        done = run(stores, profile, webhook=url)
        assert done.opened
        sent = _Hook.received[-1]
        assert sent["source"] == "radvigil"
        assert {a["id"] for a in sent["alerts"]} == {a.id for a in done.opened}
    finally:
        server.shutdown()
        server.server_close()
    assert post_webhook(url, done.opened) is False  # server gone: logged, not raised
    assert "alert webhook 127.0.0.1 failed" in caplog.text


def test_an_early_window_of_a_multi_window_run_opens_its_alert(stores, pool) -> None:
    profile, held_out = pool
    store_predictions(stores, profile, held_out[:50], start=0, sites=["A"], shift=True)
    store_predictions(stores, profile, held_out[50:150], start=50, sites=["A"])
    done = run(stores, profile)
    assert len([w for w in done.windows if w.group is None]) == 3
    opened = next(a for a in done.opened if (a.rule, a.group) == ("image_stats-drift", "all"))
    first = stores.results.get(opened.first_window)
    assert first.window_start == T0 and first.drift
    assert "x threshold" in opened.message
    resolved = next(a for a in done.resolved if (a.rule, a.group) == ("image_stats-drift", "all"))
    assert resolved.id == opened.id and "up to window" in resolved.reason


class CountingPredictions(PredictionStore):
    """The real store, noting how many full records each ``list`` call read."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.read: list[int] = []

    def list(self, **kwargs: object) -> list[PredictionRecord]:  # type: ignore[override]
        found = super().list(**kwargs)  # type: ignore[arg-type]
        self.read.append(len(found))
        return found


def _stored(stores: MonitoringStores) -> set[tuple]:
    return {
        (r.group, r.window_start, r.window_end, r.detector, r.n, r.statistic, r.drift)
        for r in stores.results.list(limit=None)
    }


def test_incremental_runs_read_what_is_new_and_equal_one_full_run(tmp_path, pool) -> None:
    profile, held_out = pool
    dbs = [Database(f"sqlite:///{tmp_path / f'{name}.db'}") for name in ("steps", "full")]
    for db in dbs:
        upgrade_database(db)
    counting = CountingPredictions(dbs[0])
    plain = MonitoringStores.from_db(dbs[0])
    steps = MonitoringStores(counting, plain.feedback, plain.results, plain.alerts)
    full = MonitoringStores.from_db(dbs[1])
    batches = [(0, 120), (120, 230), (230, 400)]
    for first, last in batches:
        for target in (steps, full):
            store_predictions(target, profile, held_out[first:last], start=first, sites=["A", "B"])
        run(steps, profile)
        # the run read the rows past the oldest open window, never the history before it
        assert counting.read[-1] <= (last - first) + 50
    run(full, profile)
    assert counting.read[0] == 120
    assert sum(counting.read) < 400 + 2 * 50  # each row read about once, plus open tails
    assert _stored(steps) == _stored(full) != set()
    for db in dbs:
        db.dispose()


def test_a_backlog_reads_at_most_max_windows_of_predictions(stores, pool) -> None:
    profile, held_out = pool
    store_predictions(stores, profile, held_out[:300], start=0, sites=["A"])
    counting = CountingPredictions(stores.predictions.db)
    capped = MonitoringStores(counting, stores.feedback, stores.results, stores.alerts)
    config = CONFIG.model_copy(
        update={"windows": CONFIG.windows.model_copy(update={"group_by": None})}
    )
    result = run_monitors(capped, profile, "m", "1", config, T0 + timedelta(days=1), max_windows=2)
    assert counting.read[0] == 2 * 50  # not the 300 stored
    assert [w.size for w in result.windows] == [50, 50]
    assert result.windows[-1].end == T0 + timedelta(minutes=299)  # the newest windows
