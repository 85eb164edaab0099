"""Dynamic micro-batching: concurrent requests share one ONNX Runtime call.

Requests wait at most ``max_wait_ms`` for a batch to fill up to ``max_size``; the batch runs in
one worker thread so ORT's intra-op threads are never oversubscribed by parallel calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Item:
    batch: np.ndarray  # k x 1 x S x S
    future: asyncio.Future
    run: RunFn


class MicroBatcher:
    """Collects preprocessed inputs for the same model and runs them together."""

    def __init__(self, max_size: int = 16, max_wait_ms: float = 4.0) -> None:
        self.max_size = max_size
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue else 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, batch: np.ndarray, run: RunFn) -> tuple[np.ndarray, np.ndarray]:
        """Queue ``batch`` for the model behind ``run``; resolves to (probabilities, embeddings)."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(batch, future, run))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            items, size = [first], len(first.batch)
            deadline = loop.time() + self.max_wait
            while size < self.max_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                items.append(item)
                size += len(item.batch)
            for run, group in _by_model(items).items():
                await self._run(run, group)

    async def _run(self, run: RunFn, group: list[_Item]) -> None:
        stacked = np.concatenate([item.batch for item in group])
        try:
            probs, embeddings = await asyncio.to_thread(run, stacked)
        except Exception as exc:  # hand the model's failure to every waiting request
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in group:
            end = start + len(item.batch)
            if not item.future.done():
                item.future.set_result((probs[start:end], embeddings[start:end]))
            start = end


def _by_model(items: list[_Item]) -> dict[RunFn, list[_Item]]:
    groups: dict[RunFn, list[_Item]] = {}
    for item in items:
        groups.setdefault(item.run, []).append(item)
    return groups
