"""The service running inside this process for scenarios and tests: URL, stores and a settle.

``running_service`` builds the app, serves it on a free loopback port and hands back what a
scenario needs beside HTTP: the database and a way to wait until every answered request,
shadow scoring included, is in the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from radvigil.config import Settings
from radvigil.errors import StoreError
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.service.background import BackgroundServer
from radvigil.service.state import ServiceState
from radvigil.store import Database

SETTLE_TIMEOUT_S = 60.0


@dataclass
class LocalService:
    """A started service: its URL, its database and its state."""

    url: str
    db: Database
    state: ServiceState

    def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Wait for pending shadow scoring, then write every logged prediction out."""
        deadline = time.monotonic() + timeout
        while self.state.background:
            if time.monotonic() > deadline:
                raise StoreError(f"shadow scoring still running after {timeout:.0f} s")
            time.sleep(0.02)
        self.state.writer.flush(timeout=timeout)

    def refresh_models(self) -> None:
        """Load alias changes now instead of at the next poll."""
        self.state.models.refresh()


@contextmanager
def running_service(settings: Settings, registry: Registry) -> Iterator[LocalService]:
    """Serve ``create_app(settings, registry)`` on 127.0.0.1 until the block ends."""
    app = create_app(settings, registry=registry)
    state: ServiceState = app.state.radvigil
    with BackgroundServer(app) as server:
        yield LocalService(server.url, state.db, state)
