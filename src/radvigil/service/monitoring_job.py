"""The service's monitoring job: the champion's drift monitors on a schedule and on demand.

Every ``RADVIGIL_MONITOR_INTERVAL_SECONDS`` (0 = only when asked through
``POST /v1/monitoring/run``) a background thread flushes the prediction writer, evaluates the
new complete windows of the champion's predictions, stores the results, opens and resolves
alerts, and refreshes the Prometheus gauges. One run at a time: a lock serialises the schedule
and on-demand runs.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from radvigil.errors import ModelError, RadvigilError, StoreError
from radvigil.loop.monitoring import MonitoringRun, MonitoringStores, latest_results, run_monitors
from radvigil.monitoring import MonitorConfig, ReferenceProfile, load_monitor_config
from radvigil.store import AlertStore, MonitorResultStore
from radvigil.store.schemas import utcnow

if TYPE_CHECKING:
    from radvigil.service.lifecycle import ServedModel
    from radvigil.service.state import ServiceState

log = logging.getLogger(__name__)


class MonitoringJob:
    """Runs :func:`~radvigil.loop.monitoring.run_monitors` for the served champion.

    The monitoring YAML is read and validated here, at start-up, so a bad file stops the
    service before it serves instead of failing every scheduled run.
    """

    def __init__(self, state: ServiceState) -> None:
        settings = state.settings
        self.state = state
        self.config: MonitorConfig = load_monitor_config(settings.monitoring_config)
        self.stores = MonitoringStores(
            state.predictions,
            state.feedback,
            MonitorResultStore(state.db),
            AlertStore(state.db, state.audit),
        )
        self.interval = settings.monitor_interval_seconds
        self.reports_dir = settings.reports_dir / "monitoring"
        self.webhook = settings.alert_webhook
        self.last_run: datetime | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def champion(self) -> tuple[ServedModel, ReferenceProfile]:
        """The served champion and its reference profile (ModelError when either is missing)."""
        champion = self.state.models.require_champion()
        profile = champion.profile
        if not isinstance(profile, ReferenceProfile):
            raise ModelError(
                f"{champion.name}/{champion.version} has no reference profile; "
                "its predictions cannot be monitored"
            )
        return champion, profile

    def run_now(self) -> MonitoringRun:
        """Evaluate the new windows now (waiting for a run in progress to finish first)."""
        champion, profile = self.champion()
        try:
            self.state.writer.flush(timeout=10)  # windows must not skip queued predictions
        except StoreError as exc:
            log.warning("monitoring runs without flushing the prediction writer: %s", exc)
        with self._lock:
            run = run_monitors(
                self.stores,
                profile,
                champion.name,
                champion.version,
                self.config,
                reports_dir=self.reports_dir,
                webhook=self.webhook,
                thresholds=champion.thresholds,
            )
            self.last_run, self.last_error = utcnow(), None
            self.refresh_metrics(champion.name, champion.version)
        for alert in run.opened:
            log.warning("monitoring alert %s opened: %s", alert.id, alert.message)
        return run

    def refresh_metrics(self, model_name: str, model_version: str) -> None:
        """Set the gauges from the newest stored window of every group and the open alerts."""
        metrics = self.state.metrics
        for row in latest_results(self.stores.results, model_name, model_version):
            labels = (row.detector, row.group)
            metrics.monitor_drift.labels(*labels).set(1.0 if row.drift else 0.0)
            if row.statistic is not None:
                metrics.monitor_statistic.labels(*labels).set(row.statistic)
            if row.threshold is not None:
                metrics.monitor_threshold.labels(*labels).set(row.threshold)
        active = self.stores.alerts.count(state="open") + self.stores.alerts.count(
            state="acknowledged"
        )
        metrics.open_alerts.set(active)

    def start(self) -> None:
        """Start the schedule (nothing to start when the interval is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="monitoring", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_now()
            except RadvigilError as exc:
                self.last_error = exc.message
                log.warning("scheduled monitoring run skipped: %s", exc.message)
            except Exception:  # the schedule must survive any one bad run
                self.last_error = "unexpected error; see the log"
                log.exception("scheduled monitoring run failed")
