"""PredictionWriter and Spool on SQLite: batching, outages, replay, no loss, no duplicates.

The outage is a seam, not a monkeypatch: :class:`Switchable` wraps the real store and refuses
writes while ``down``, as a database that cannot be reached would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from radvigil.errors import StoreError, StoreUnavailableError
from radvigil.store import Database, PredictionRecord, PredictionStore, Spool, upgrade_database
from radvigil.store.writer import PredictionWriter


class Switchable:
    """The real store, with an off switch and a list of ids the database 'refuses'."""

    def __init__(self, store: PredictionStore, refuse: Sequence[str] = ()) -> None:
        self.store = store
        self.down = False
        self.refuse = set(refuse)

    def add_many(self, records: Sequence[PredictionRecord]) -> int:
        if self.down:
            raise StoreUnavailableError("test outage")
        if self.refuse & {r.id for r in records}:
            raise StoreError("value too long for type character varying(64)")
        if "req-bug" in {r.id for r in records}:
            raise ValueError("a bug in the sink")
        return self.store.add_many(records)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    db = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(db)
    yield PredictionStore(db)
    db.dispose()


@pytest.fixture()
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def records(n: int, start: int = 0) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            id=f"req-{i:05d}",
            model_name="m",
            model_version="1",
            task="chest-pneumonia",
            probabilities={"NORMAL": 0.3, "PNEUMONIA": 0.7},
            predicted_class="PNEUMONIA",
            confidence=0.7,
            latency_ms=5.0,
            embedding=[float(i), 1.0],
        )
        for i in range(start, start + n)
    ]


def ids(store: PredictionStore) -> list[str]:
    return [r.id for r in store.list(limit=None)]


def test_batches_reach_the_database(store: PredictionStore, spool: Spool) -> None:
    with PredictionWriter(store, spool, max_batch=10, max_wait_s=0.05) as writer:
        for item in records(35):
            writer.submit(item)
        assert writer.flush() is True
        assert writer.stats.written == 35
    assert store.count() == 35
    assert not spool.pending()


def test_outage_spools_then_replays_each_record_once(store: PredictionStore, spool: Spool) -> None:
    sink = Switchable(store)
    with PredictionWriter(sink, spool, max_batch=8, max_wait_s=0.02, retry_interval_s=30) as w:
        for item in records(10):
            w.submit(item)
        assert w.flush()
        sink.down = True
        for item in records(20, start=10):
            w.submit(item)
        assert w.flush() is False
        assert spool.count() == 20 and store.count() == 10
        sink.down = False
        assert w.flush() is True  # flush retries the database at once, whatever the interval
        assert (w.stats.written, w.stats.spooled, w.stats.replayed) == (10, 20, 20)
    assert ids(store) == [r.id for r in records(30)]


def test_replay_happens_by_itself_after_the_retry_interval(
    store: PredictionStore, spool: Spool
) -> None:
    sink = Switchable(store)
    sink.down = True
    with PredictionWriter(sink, spool, max_wait_s=0.01, retry_interval_s=0.1) as writer:
        for item in records(5):
            writer.submit(item)
        writer.flush()
        sink.down = False
        deadline = time.monotonic() + 10
        while store.count() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert store.count() == 5 and not spool.pending()


def test_start_up_replays_what_an_earlier_run_spooled(store: PredictionStore, spool: Spool) -> None:
    spool.append(records(7))
    with PredictionWriter(store, spool) as writer:
        assert writer.flush() is True
        assert writer.stats.replayed == 7
    assert store.count() == 7


def test_replaying_twice_inserts_once(store: PredictionStore, spool: Spool) -> None:
    store.add_many(records(4))
    spool.append(records(6))
    spool.append(records(6))
    assert spool.count() == 12
    assert spool.replay(store.add_many) == 2
    assert spool.replay(store.add_many) == 0
    assert ids(store) == [r.id for r in records(6)]
    assert not spool.pending()


def test_failed_replay_keeps_the_claimed_file(store: PredictionStore, spool: Spool) -> None:
    sink = Switchable(store)
    spool.append(records(5))
    sink.down = True
    with pytest.raises(StoreUnavailableError):
        spool.replay(sink.add_many, batch_size=2)
    assert len(spool.claimed()) == 1 and spool.count() == 5
    spool.append(records(2, start=5))  # new appends go to a fresh live file meanwhile
    sink.down = False
    assert spool.replay(sink.add_many) == 7
    assert not spool.pending() and store.count() == 7


def test_close_writes_everything_out(store: PredictionStore, spool: Spool) -> None:
    writer = PredictionWriter(store, spool, max_batch=1000, max_wait_s=30).start()
    for item in records(50):
        writer.submit(item)
    writer.close()
    assert store.count() == 50
    with pytest.raises(StoreError, match="closed"):
        writer.submit(records(1)[0])


def test_submit_needs_a_started_writer(store: PredictionStore, spool: Spool) -> None:
    with pytest.raises(StoreError, match="not running"):
        PredictionWriter(store, spool).submit(records(1)[0])


def test_refused_records_are_set_aside_not_retried(store: PredictionStore, spool: Spool) -> None:
    sink = Switchable(store, refuse=["req-00003"])
    with PredictionWriter(sink, spool, max_batch=10, max_wait_s=0.05) as writer:
        for item in records(6):
            writer.submit(item)
        assert writer.flush() is True
        assert writer.stats.rejected == 1
    assert len(ids(store)) == 5 and "req-00003" not in ids(store)
    (entry,) = [json.loads(line) for line in spool.rejected.read_text().splitlines()]
    assert "character varying" in entry["reason"] and "req-00003" in entry["record"]


def test_torn_spool_line_is_set_aside(store: PredictionStore, spool: Spool) -> None:
    spool.append(records(3))
    with spool.live.open("a") as handle:
        handle.write('{"id": "req-torn", "model_na')
    assert spool.replay(store.add_many) == 3
    assert "req-torn" in spool.rejected.read_text()
    assert not spool.pending()


def test_a_failing_sink_does_not_stop_the_writer(store: PredictionStore, spool: Spool) -> None:
    sink = Switchable(store)
    with PredictionWriter(sink, spool, max_batch=10, max_wait_s=0.05) as writer:
        for item in [*records(3), records(1)[0].model_copy(update={"id": "req-bug"})]:
            writer.submit(item)
        assert writer.flush() is True
        writer.submit(records(1, start=3)[0])  # still running
        writer.flush()
        assert writer.stats.rejected == 1
    assert store.count() == 4
    assert "a bug in the sink" in spool.rejected.read_text()
