"""PredictionWriter: batches predictions into the database off the request path, never losing one.

A background thread collects submitted records into batches (``max_batch`` or ``max_wait_s``,
whichever comes first) and inserts them. While the database is unreachable, batches go to the
durable :class:`~radvigil.store.spool.Spool` instead; the spool is replayed at start-up, after
each successful write and on :meth:`PredictionWriter.flush`. A record the sink refuses for any
reason but an outage is set aside in the spool's ``.rejected.jsonl`` file and logged, so one bad
record (or a bug in a sink) cannot block the rest. What ``submit`` has accepted but not yet
written is held in memory for at most ``max_wait_s``; :meth:`PredictionWriter.close` writes it
all out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Protocol

from radvigil.errors import RadvigilError, StoreError, StoreUnavailableError
from radvigil.store.schemas import PredictionRecord
from radvigil.store.spool import Spool

log = logging.getLogger(__name__)


class PredictionSink(Protocol):
    """Where batches go: :class:`~radvigil.store.predictions.PredictionStore` or a test double."""

    def add_many(self, records: Sequence[PredictionRecord]) -> int: ...


@dataclass(frozen=True)
class WriterStats:
    """Counts since start: written live, spooled, replayed from the spool, rejected."""

    submitted: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0


@dataclass
class _Flush:
    done: threading.Event


_STOP = object()


class PredictionWriter:
    """Writes predictions in the background; the database being down loses nothing.

    Args:
        sink: the prediction store (anything with an idempotent ``add_many``).
        spool: the spool, or its folder (``Settings.spool_dir``).
        max_batch: most records per insert.
        max_wait_s: longest a record waits for its batch to fill.
        retry_interval_s: after an outage, how long to spool without trying the database.
    """

    def __init__(
        self,
        sink: PredictionSink,
        spool: Spool | Path,
        *,
        max_batch: int = 256,
        max_wait_s: float = 0.2,
        retry_interval_s: float = 5.0,
    ) -> None:
        self.sink = sink
        self.spool = spool if isinstance(spool, Spool) else Spool(spool)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.retry_interval_s = retry_interval_s
        self._queue: queue.Queue[object] = queue.Queue()
        self._stats = WriterStats()
        self._stats_lock = threading.Lock()
        self._held: list[PredictionRecord] = []
        self._down_until = 0.0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._gate = threading.Lock()  # no submit can slip in behind close()'s stop marker

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return self._stats

    def start(self) -> PredictionWriter:
        """Start the background thread (it first replays whatever an earlier run spooled)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
            self._thread.start()
        return self

    def submit(self, record: PredictionRecord) -> None:
        """Queue a record for writing; returns at once."""
        with self._gate:
            self._check_running()
            self._count(submitted=1)
            self._queue.put(record)

    def flush(self, timeout: float | None = 60.0) -> bool:
        """Write out everything submitted so far and try the spool once more.

        Returns:
            True when nothing is left in the spool (all records are in the database).

        Raises:
            StoreError: the writer is not running, or did not finish within ``timeout``.
        """
        self._check_running()
        barrier = _Flush(threading.Event())
        self._queue.put(barrier)
        self._wait(barrier.done, timeout)
        return not (self._held or self.spool.pending())

    def close(self, timeout: float | None = 60.0) -> None:
        """Write out (or spool) everything submitted, then stop the thread."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
            if self._thread is None:
                return
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StoreError(f"prediction writer did not stop within {timeout} s")

    def __enter__(self) -> PredictionWriter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_running(self) -> None:
        if self._closed:
            raise StoreError("prediction writer is closed")
        if self._thread is None or not self._thread.is_alive():
            raise StoreError("prediction writer is not running (call start())")

    def _wait(self, event: threading.Event, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not event.wait(0.05):
            if self._thread is None or not self._thread.is_alive():
                raise StoreError("prediction writer stopped unexpectedly; see the log")
            if deadline is not None and time.monotonic() > deadline:
                raise StoreError(f"prediction writer did not flush within {timeout} s")

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            current = self._stats
            self._stats = replace(
                current, **{key: getattr(current, key) + value for key, value in deltas.items()}
            )

    # --- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("prediction writer crashed; unsent predictions are in the queue")
            raise

    def _loop(self) -> None:
        self._replay(force=True)
        while True:
            batch, barriers, stop = self._collect()
            if batch:
                self._write(batch)
            if barriers or stop or time.monotonic() >= self._down_until:
                self._replay(force=bool(barriers or stop))
            for barrier in barriers:
                barrier.done.set()
            if stop:
                if self._held:
                    log.critical("%d predictions could not be written or spooled", len(self._held))
                return

    def _collect(self) -> tuple[list[PredictionRecord], list[_Flush], bool]:
        """Block for the first item, then gather until the batch is full or the wait is over."""
        batch, self._held = self._held, []
        barriers: list[_Flush] = []
        idle_wait = self.retry_interval_s if self.spool.pending() or batch else None
        try:
            item = self._queue.get(timeout=idle_wait)
        except queue.Empty:
            return batch, barriers, False
        deadline = time.monotonic() + self.max_wait_s
        while True:
            if item is _STOP:
                return batch, barriers, True
            if isinstance(item, _Flush):
                barriers.append(item)
                return batch, barriers, False
            batch.append(item)  # type: ignore[arg-type]
            remaining = deadline - time.monotonic()
            if len(batch) >= self.max_batch or remaining <= 0:
                return batch, barriers, False
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return batch, barriers, False

    def _write(self, batch: list[PredictionRecord]) -> None:
        if time.monotonic() < self._down_until:
            self._to_spool(batch)
            return
        try:
            self._count(written=self._deliver(batch))
        except StoreUnavailableError as exc:
            log.warning("database unavailable, spooling %d predictions: %s", len(batch), exc)
            self._down_until = time.monotonic() + self.retry_interval_s
            self._to_spool(batch)

    def _deliver(self, batch: list[PredictionRecord]) -> int:
        """Insert a batch; records refused for themselves are set aside one by one."""
        try:
            return self.sink.add_many(batch)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # whatever the sink cannot take must not stop the rest
            if len(batch) > 1:
                return sum(self._deliver([record]) for record in batch)
            reason = exc.message if isinstance(exc, RadvigilError) else repr(exc)
            log.error("prediction %s refused: %s", batch[0].id, reason, exc_info=exc)
            self.spool.reject(batch[0].model_dump_json(), reason)
            self._count(rejected=1)
            return 0

    def _to_spool(self, batch: list[PredictionRecord]) -> None:
        try:
            self.spool.append(batch)
        except OSError as exc:
            log.critical("cannot spool %d predictions, holding them in memory: %s", len(batch), exc)
            self._held = batch + self._held
            return
        self._count(spooled=len(batch))

    def _replay(self, *, force: bool) -> None:
        if not force and time.monotonic() < self._down_until:
            return
        try:
            replayed = self.spool.replay(self._deliver)
        except StoreUnavailableError as exc:
            log.info("database still unavailable, spool kept: %s", exc)
            self._down_until = time.monotonic() + self.retry_interval_s
        except OSError as exc:
            log.error("cannot read the prediction spool: %s", exc)
        else:
            if replayed:
                log.info("replayed %d spooled predictions into the database", replayed)
            self._count(replayed=replayed)
            self._down_until = 0.0
