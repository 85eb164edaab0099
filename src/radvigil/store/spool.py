"""A durable local spool: predictions the database could not take, as JSON lines on disk.

Appends go to ``<name>.jsonl`` and are fsynced before :meth:`Spool.append` returns. A replay
first renames that file to a claimed ``<name>.<ns>.<pid>.replay.jsonl`` (so new appends start
a fresh file), sends it in batches, and deletes it only after every batch is in the database.
A crash mid-replay leaves the claimed file to be replayed again, which is harmless because
inserts are idempotent. ``flock`` keeps several processes sharing one home from colliding.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from radvigil.store.schemas import PredictionRecord

log = logging.getLogger(__name__)


class Spool:
    """JSON-lines spool files for one kind of record under ``directory``.

    Args:
        directory: the spool folder (created on first append), e.g. ``RADVIGIL_HOME/spool``.
        name: file stem, so several spools can share a folder.
    """

    def __init__(self, directory: Path, name: str = "predictions") -> None:
        self.directory = Path(directory)
        self.name = name
        self.live = self.directory / f"{name}.jsonl"
        self.rejected = self.directory / f"{name}.rejected.jsonl"

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Append records and fsync them: once this returns they survive a crash."""
        if not records:
            return
        data = "".join(record.model_dump_json() + "\n" for record in records).encode()
        with self._locked(".lock"):
            self._write(self.live, data)

    def reject(self, line: str, reason: str) -> None:
        """Keep a record the database refused (not an outage) beside the spool, for a human."""
        entry = json.dumps({"reason": reason, "record": line.rstrip("\n")}) + "\n"
        with self._locked(".lock"):
            self._write(self.rejected, entry.encode())

    def claimed(self) -> list[Path]:
        """Files a replay has claimed but not finished, oldest first."""
        return sorted(self.directory.glob(f"{self.name}.*.replay.jsonl"))

    def pending(self) -> bool:
        """Whether any spooled record waits for the database."""
        live = self.live.exists() and self.live.stat().st_size > 0
        return live or bool(self.claimed())

    def count(self) -> int:
        """How many records wait: reads every file, fast (GB/s) but not free during an outage."""
        total = 0
        for path in (self.live, *self.claimed()):
            try:
                with path.open("rb") as data:
                    while chunk := data.read(1 << 20):
                        total += chunk.count(b"\n")
            except FileNotFoundError:  # replayed and removed meanwhile
                continue
        return total

    def replay(
        self, sink: Callable[[list[PredictionRecord]], int], *, batch_size: int = 500
    ) -> int:
        """Send every spooled record to ``sink`` and delete what it took; return its total.

        ``sink`` must be idempotent and raise (e.g. StoreUnavailableError) when it cannot
        take a batch; the file being replayed is then kept whole for the next replay. Only
        one process replays at a time; the others return 0 at once.
        """
        if not self.pending():
            return 0
        total = 0
        with self._locked(".replay.lock", blocking=False) as got:
            if not got:
                return 0
            self._claim()
            for path in self.claimed():
                for batch in self._batches(path, batch_size):
                    total += sink(batch)
                path.unlink()
                self._sync_dir()
        return total

    def _claim(self) -> None:
        with self._locked(".lock"):
            if self.live.exists() and self.live.stat().st_size > 0:
                target = self.live.with_name(
                    f"{self.name}.{time.time_ns():020d}.{os.getpid()}.replay.jsonl"
                )
                self.live.rename(target)
                self._sync_dir()

    def _batches(self, path: Path, size: int) -> Iterator[list[PredictionRecord]]:
        batch: list[PredictionRecord] = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    batch.append(PredictionRecord.model_validate_json(line))
                except ValidationError as exc:  # e.g. a line torn by a crash mid-write
                    log.error("unreadable line %d in %s kept aside: %s", number, path, exc)
                    self.reject(line, f"unreadable spool line: {exc.errors()[0]['msg']}")
                    continue
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _write(self, path: Path, data: bytes) -> None:
        new = not path.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self, lock_name: str, *, blocking: bool = True) -> Iterator[bool]:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle: IO[bytes] = (self.directory / lock_name).open("ab")
        try:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            handle.close()
