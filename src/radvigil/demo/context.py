"""What the demo's steps share: the started service's shape, the observer, and the scenario's
set-up handed to the live act (so the act depends on these, not on the scenario that runs it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from radvigil.config import Settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.demo.outcomes import ScenarioConfig, ScenarioResult, StepRecord
from radvigil.evaluation import GateCriteria
from radvigil.model.config import TrainConfig
from radvigil.registry import Registry
from radvigil.store import Database

T = TypeVar("T")


class RunningService(Protocol):
    """What the scenario needs of a started service besides its HTTP API."""

    url: str
    db: Database

    def settle(self) -> None: ...

    def refresh_models(self) -> None: ...


ServeFn = Callable[[Settings, Registry], AbstractContextManager[RunningService]]


class ScenarioObserver(Protocol):
    """Hears the scenario as it goes (the CLI prints; tests stay silent)."""

    def step_started(self, name: str) -> None: ...

    def step_done(self, step: StepRecord, detail: object) -> None: ...

    def progress(self, items: Iterable, description: str) -> Iterable: ...


class SilentObserver:
    def step_started(self, name: str) -> None:
        pass

    def step_done(self, step: StepRecord, detail: object) -> None:
        pass

    def progress(self, items: Iterable, description: str) -> Iterable:
        return items


@dataclass(frozen=True)
class DemoContext:
    """The scenario's configuration, stores and model name, and how a step is run and heard."""

    config: ScenarioConfig
    settings: Settings
    name: str
    catalog: DatasetCatalog
    registry: Registry
    criteria: GateCriteria
    train_config: TrainConfig
    work: Path
    observer: ScenarioObserver

    def step(self, result: ScenarioResult, name: str, fn: Callable[[], tuple[str, T]]) -> T:
        """Run one named step of the live act (see :func:`run_step`)."""
        return run_step(self.observer, result, name, fn)


def run_step(
    observer: ScenarioObserver, result: ScenarioResult, name: str, fn: Callable[[], tuple[str, T]]
) -> T:
    """Run one named step, record its outcome and time in ``result``, tell the observer."""
    observer.step_started(name)
    started = time.perf_counter()
    outcome, detail = fn()
    record = StepRecord(name=name, outcome=outcome, seconds=time.perf_counter() - started)
    result.steps.append(record)
    observer.step_done(record, detail)
    return detail
