"""The service's view of monitoring: stored results and alerts, gauges, and on-demand runs.

The service never evaluates windows on its own threads (detectors and Evidently reports cost
seconds of CPU and stalled requests): the scheduled runs belong to ``radvigil monitor worker``,
a process of its own, and ``POST /v1/monitoring/run`` starts ``radvigil monitor run`` as a child
process on the service's database and registry and waits for its JSON. The Prometheus gauges
are read from the stored results whenever ``/metrics`` is scraped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from radvigil.errors import ConflictError, ModelError, NotFoundError, RadvigilError, StoreError
from radvigil.loop.monitor_runs import (
    MonitoringRun,
    MonitoringStores,
    acknowledge_alert,
    ensure_report,
    latest_results,
    resolve_alert,
    stored_report,
)
from radvigil.monitoring import MonitorConfig, ReferenceProfile, load_monitor_config
from radvigil.store import AlertPublic, AlertStore, MonitorResultStore
from radvigil.store.leases import LeaseStore

if TYPE_CHECKING:
    from radvigil.config import Settings
    from radvigil.service.lifecycle import ModelManager, ServedModel
    from radvigil.service.metrics import ServiceMetrics
    from radvigil.store import AuditLog, Database, FeedbackStore, PredictionStore
    from radvigil.store.writer import PredictionWriter

log = logging.getLogger(__name__)
RUN_TIMEOUT_S = 600.0
LEASE_WAIT_S = 120.0
RUN_LEASE_TTL_S = RUN_TIMEOUT_S + 60  # outlives the longest run, expires after a crash


class MonitoringJob:
    """Monitoring stores and gauges for the routes; on-demand runs in a child process.

    The monitoring YAML is read and validated here, at start-up, so a bad file stops the
    service before it serves.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        predictions: PredictionStore,
        feedback: FeedbackStore,
        audit: AuditLog,
        models: ModelManager,
        writer: PredictionWriter,
        metrics: ServiceMetrics,
    ) -> None:
        self.settings, self.db, self.models = settings, db, models
        self.writer, self.metrics = writer, metrics
        self.config: MonitorConfig = load_monitor_config(settings.monitoring_config)
        self.stores = MonitoringStores(
            predictions, feedback, MonitorResultStore(db), AlertStore(db, audit)
        )
        self.reports_dir = settings.reports_dir / "monitoring"
        self.leases = LeaseStore(db)

    def champion(self) -> tuple[ServedModel, ReferenceProfile]:
        """The served champion and its reference profile (ModelError when either is missing)."""
        champion = self.models.require_champion()
        profile = champion.profile
        if not isinstance(profile, ReferenceProfile):
            raise ModelError(
                f"{champion.name}/{champion.version} has no reference profile; "
                "its predictions cannot be monitored"
            )
        return champion, profile

    def child_env(self) -> dict[str, str]:
        """The environment that points ``radvigil monitor run`` at this service's stores."""
        settings = self.settings
        env = {
            **os.environ,
            "RADVIGIL_HOME": str(settings.home_dir),
            "RADVIGIL_DATABASE_URL": self.db.url.render_as_string(hide_password=False),
            "MLFLOW_TRACKING_URI": self.models.registry.tracking_uri,
            "RADVIGIL_MODEL_NAME": settings.model_name,
        }
        if settings.monitoring_config is not None:
            env["RADVIGIL_MONITORING_CONFIG"] = str(settings.monitoring_config)
        if settings.alert_webhook:
            env["RADVIGIL_ALERT_WEBHOOK"] = settings.alert_webhook
        return env

    async def run_now(self) -> MonitoringRun:
        """Evaluate the new windows now, in a ``radvigil monitor run`` child process.

        Single-flight across replicas: the run holds the database lease ``monitor-run:<model>``
        and a second request while it is held is refused rather than starting another child.

        Raises:
            ConflictError: a run requested through any replica is still in progress.
        """
        lease = f"monitor-run:{self.settings.model_name}"
        holder = f"service:{secrets.token_hex(8)}"
        claimed = await asyncio.to_thread(self.leases.claim, lease, holder, RUN_LEASE_TTL_S)
        if not claimed:
            raise ConflictError("a monitoring run is already in progress; retry when it ends")
        try:
            return await self._run(self.champion()[0])
        finally:
            await asyncio.to_thread(self.leases.release, lease, holder)

    async def _run(self, champion: ServedModel) -> MonitoringRun:
        try:
            await asyncio.to_thread(self.writer.flush, 10)  # no queued prediction skipped
        except StoreError as exc:
            log.warning("monitoring runs without flushing the prediction writer: %s", exc)
        args = ["monitor", "run", "--json", "--settle", "0", "--wait", str(LEASE_WAIT_S)]
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "radvigil",
            *args,
            env=self.child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(child.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise StoreError(f"the monitoring run took longer than {RUN_TIMEOUT_S:.0f} s") from None
        if child.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or ["no output"]
            raise RadvigilError(f"the monitoring run failed: {lines[-1]}")
        run = MonitoringRun.model_validate_json(out.decode().strip().splitlines()[-1])
        await asyncio.to_thread(self.refresh_metrics, champion.name, champion.version)
        for alert in run.opened:
            log.warning("monitoring alert %s opened: %s", alert.id, alert.message)
        return run

    def refresh_metrics(self, model_name: str, model_version: str) -> None:
        """Set the gauges from the newest stored window of every group and the open alerts."""
        metrics = self.metrics
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

    def refresh_champion_metrics(self) -> None:
        """The gauges for the served champion (what a scrape shows); quiet when none is served."""
        champion = self.models.champion
        if champion is None:
            return
        try:
            self.refresh_metrics(champion.name, champion.version)
        except StoreError as exc:
            log.warning("monitoring gauges not refreshed: %s", exc.message)

    def acknowledge(self, alert_id: int, actor: str) -> AlertPublic:
        """Acknowledge an open alert (audited), then update the gauges."""
        alert = acknowledge_alert(self.stores.alerts, alert_id, actor)
        self.refresh_metrics(alert.model_name, alert.model_version)
        return alert

    def resolve(self, alert_id: int, actor: str, reason: str) -> AlertPublic:
        """Resolve an open or acknowledged alert, saying why (audited), then update the gauges."""
        alert = resolve_alert(self.stores.alerts, alert_id, actor, reason)
        self.refresh_metrics(alert.model_name, alert.model_version)
        return alert

    def report_path(self, result_id: int) -> Path:
        """The Evidently HTML of a monitor result's window, written now if it was not (slow:
        call it on the heavy pool)."""
        found = stored_report(self.stores, result_id, self.reports_dir)
        if found is not None:
            return found
        row = self.stores.results.get(result_id)
        profile = self._profile_of(row.model_name, row.model_version)
        return ensure_report(self.stores, profile, result_id, self.reports_dir)

    def _profile_of(self, name: str, version: str) -> ReferenceProfile:
        models = self.models
        for served in (models.champion, models.challenger):
            if served is None or (served.name, served.version) != (name, version):
                continue
            if isinstance(served.profile, ReferenceProfile):
                return served.profile
        raise NotFoundError(
            f"the report of {name}/{version} was not written and that version's profile is not "
            "loaded here; write it with `radvigil monitor report`"
        )
