"""The monitoring worker: the champion's drift monitors on a schedule, outside the server.

Windows, detectors and (optionally) Evidently reports cost seconds of CPU per window; run in the
serving process they stall requests, so ``radvigil monitor worker`` (or ``monitor run`` from
cron) runs them in a process of its own. Several workers may run (one per replica, say): each
run first claims the ``monitor:<model>`` lease in the database, so one worker evaluates a window
and the others skip that round. Predictions younger than ``settle_s`` are left for the next run,
so a row still in a replica's write queue cannot be skipped by a window that already closed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from radvigil.errors import DataError
from radvigil.loop.monitor_runs import MonitoringRun, MonitoringStores, run_monitors
from radvigil.monitoring import MonitorConfig, ReferenceProfile
from radvigil.registry import Registry
from radvigil.store import Database, LeaseStore
from radvigil.store.monitor_results import WindowKind
from radvigil.store.schemas import utcnow

log = logging.getLogger(__name__)
LEASE_TTL_S = 600.0  # longer than any run; a crashed worker's claim lapses after this
SETTLE_S = 5.0


def worker_name() -> str:
    """This process as a lease holder: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MonitoringWorker:
    """Runs :func:`~radvigil.loop.monitor_runs.run_monitors` for a champion under a lease."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        model_name: str,
        config: MonitorConfig,
        *,
        kind: WindowKind = "count",
        reports_dir: Path | None = None,
        webhook: str | None = None,
        settle_s: float = SETTLE_S,
        lease_ttl_s: float = LEASE_TTL_S,
        holder: str | None = None,
    ) -> None:
        self.stores = MonitoringStores.from_db(db)
        self.leases = LeaseStore(db)
        self.registry = registry
        self.model_name = model_name
        self.config = config
        self.kind = kind
        self.reports_dir = reports_dir
        self.webhook = webhook
        self.settle_s = settle_s
        self.lease_ttl_s = lease_ttl_s
        self.holder = holder or worker_name()
        self._versions: dict[str, tuple[ReferenceProfile, dict[str, float]]] = {}

    @property
    def lease(self) -> str:
        return f"monitor:{self.model_name}"

    def champion(self) -> tuple[str, ReferenceProfile, dict[str, float]]:
        """The champion's version, reference profile and operating thresholds (loaded once)."""
        version = str(self.registry.resolve(f"{self.model_name}@champion").version)
        if version not in self._versions:
            loaded = self.registry.load(f"{self.model_name}/{version}")
            if loaded.profile_dir is None:
                raise DataError(
                    f"{self.model_name}/{version} has no reference profile to monitor with"
                )
            thresholds = loaded.card.operating_thresholds()
            self._versions[version] = (ReferenceProfile.from_path(loaded.profile_dir), thresholds)
        profile, thresholds = self._versions[version]
        return version, profile, thresholds

    def run_once(self, *, wait_s: float = 0.0) -> MonitoringRun | None:
        """Evaluate the new complete windows; None when another worker holds the lease.

        Args:
            wait_s: keep trying to claim the lease this long (an on-demand run waits out a
                scheduled one instead of reporting nothing).
        """
        version, profile, thresholds = self.champion()
        deadline = time.monotonic() + wait_s
        while not self.leases.claim(self.lease, self.holder, self.lease_ttl_s):
            if time.monotonic() >= deadline:
                log.info("%s is held by another worker; skipping this round", self.lease)
                return None
            time.sleep(0.5)
        try:
            return run_monitors(
                self.stores,
                profile,
                self.model_name,
                version,
                self.config,
                utcnow() - timedelta(seconds=self.settle_s),
                kind=self.kind,
                reports_dir=self.reports_dir,
                webhook=self.webhook,
                thresholds=thresholds,
            )
        finally:
            self.leases.release(self.lease, self.holder)

    def run_forever(
        self,
        every_s: float,
        stop: threading.Event,
        on_run: Callable[[MonitoringRun | None], None] = lambda run: None,
        on_error: Callable[[Exception], None] = lambda exc: None,
    ) -> None:
        """Run every ``every_s`` seconds until ``stop`` is set; one bad run never ends the loop."""
        while not stop.is_set():
            try:
                on_run(self.run_once())
            except Exception as exc:  # the schedule must survive any one bad run
                log.exception("monitoring run failed")
                on_error(exc)
            stop.wait(every_s)
