"""Dynamic micro-batching: concurrent requests share one worker-thread call.

Requests wait at most ``max_wait_ms`` for a batch to fill up to ``max_size`` jobs; the whole
batch then goes to ``run`` in one worker thread (decode, preprocess, ONNX Runtime and the
per-batch assessment: :func:`radvigil.service.inference.score`), so a request costs one thread
hop, not one per step, and ORT's intra-op threads are never oversubscribed by parallel calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RunFn = Callable[[list[Any]], list[Any]]  # one result per job; an Exception fails that job only


@dataclass
class _Item:
    job: Any
    future: asyncio.Future


class MicroBatcher:
    """Collects jobs from concurrent requests and hands them to ``run`` together."""

    def __init__(self, run: RunFn, max_size: int = 16, max_wait_ms: float = 4.0) -> None:
        self.run = run
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue else 0

    @property
    def queue(self) -> asyncio.Queue[_Item]:
        if self._queue is None:
            raise RuntimeError("the micro-batcher is not started")
        return self._queue

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, job: Any) -> Any:
        """Queue ``job``; resolves to its result (or raises its exception)."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(_Item(job, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_size:
                if not self.queue.empty():
                    items.append(self.queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            await self._run(items)

    async def _run(self, items: list[_Item]) -> None:
        try:
            results = await asyncio.to_thread(self.run, [item.job for item in items])
        except Exception as exc:  # hand the worker's failure to every waiting request
            results = [exc] * len(items)
        for item, result in zip(items, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
