"""Everything one running service holds, built once at start-up and shared by the routes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from radvigil.config import Settings
from radvigil.errors import StoreError
from radvigil.loop.actions import label_case, version_recorder
from radvigil.loop.deployment import deployments_for
from radvigil.loop.note_desk import NoteDesk, rewriter_from_settings
from radvigil.loop.onboarding import label_policy, registry_thresholds
from radvigil.loop.rollout import Action, Rollout
from radvigil.loop.shadow import ShadowReport, shadow_evidence, shadow_report
from radvigil.registry import Registry
from radvigil.service import inference
from radvigil.service.batcher import MicroBatcher
from radvigil.service.lifecycle import ModelManager
from radvigil.service.metrics import ServiceMetrics
from radvigil.service.monitoring_job import MonitoringJob
from radvigil.service.oidc import OidcClient
from radvigil.service.security import Authenticator, MemoryBuckets, RateLimiter
from radvigil.service.sinks import AuditedPredictions
from radvigil.store import (
    AuditLog,
    Database,
    FeedbackPublic,
    FeedbackStore,
    KeyStore,
    NoteStore,
    PredictionStore,
    PredictionWriter,
    ReviewQueue,
    upgrade_database,
)
from radvigil.store.ratelimits import DatabaseBuckets
from radvigil.store.sessions import SESSION_MAX_SECONDS, SessionStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ServiceState:
    settings: Settings
    db: Database
    predictions: PredictionStore
    feedback: FeedbackStore
    keys: KeyStore
    audit: AuditLog
    sink: AuditedPredictions
    writer: PredictionWriter
    models: ModelManager
    batcher: MicroBatcher
    metrics: ServiceMetrics
    auth: Authenticator
    limiter: RateLimiter
    monitoring: MonitoringJob
    notes: NoteDesk
    background: set = field(default_factory=set)
    explain_slots: asyncio.Semaphore = field(init=False)
    explain_waiting: int = 0
    sessions: SessionStore = field(init=False)
    oidc: OidcClient | None = field(init=False)
    heavy_pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.explain_slots = asyncio.Semaphore(self.settings.explain_concurrency)
        self.sessions = SessionStore(
            self.db, self.settings.session_idle_minutes * 60, SESSION_MAX_SECONDS
        )
        self.oidc = OidcClient.from_settings(self.settings)
        self.heavy_pool = ThreadPoolExecutor(
            self.settings.heavy_concurrency, thread_name_prefix="radvigil-heavy"
        )

    async def run_heavy(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run slow CPU work (note rewrites, Evidently reports) on the capped heavy pool.

        Its own ``RADVIGIL_HEAVY_CONCURRENCY`` threads, never the default executor that
        inference and short database calls use, so a burst of reports cannot stall predictions.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.heavy_pool, functools.partial(fn, *args, **kwargs))

    def audit_security(self, action: str, actor: str, details: dict[str, Any]) -> None:
        """Audit a security event (failed sign-in, 403); a database outage only logs it."""
        try:
            self.audit.append(actor=actor, action=action, object_type="security", details=details)
        except StoreError as exc:
            log.warning("could not audit %s by %s: %s", action, actor, exc.message)

    def rollout(self) -> Rollout:
        """The rollout commands of the served model, with the shadow comparison as evidence."""
        name = self.settings.model_name
        return Rollout(
            self.models.registry,
            name,
            version_recorder(self.audit, name),
            changes_dir=self.settings.reports_dir / "changes",
            evidence=shadow_evidence(self.predictions, self.feedback),
            deployments=self.models.deployments,
        )

    def move_rollout(
        self, action: Action, actor: str, reason: str, *, share: float | None, force: bool
    ) -> str | None:
        """One rollout step (API and dashboard alike), then serve what the aliases say now."""
        version = self.rollout().move(action, actor, reason, share=share, force=force)
        self.models.refresh()
        return version

    def shadow_report(self) -> ShadowReport:
        """The shadow comparison of the challenger in rollout, or of the one being served."""
        serving = self.models.challenger.version if self.models.challenger else None
        return shadow_report(
            self.predictions, self.feedback, self.rollout().state().challenger, serving
        )

    def label(
        self, prediction_id: str, label: str, reviewer: str, comment: str | None
    ) -> FeedbackPublic:
        """Record a clinician's label (API and dashboard alike), charged to a budgeted site."""

        def catch_up() -> None:  # the prediction may still be in the write queue
            self.writer.flush(timeout=5)

        return label_case(
            self.predictions,
            self.feedback,
            self.audit,
            prediction_id,
            label,
            reviewer,
            comment,
            catch_up=catch_up,
            policy_of=label_policy(
                ReviewQueue(self.db), self.settings, registry_thresholds(self.models.registry)
            ),
        )

    @classmethod
    def build(cls, settings: Settings, registry: Registry, db: Database | None = None):
        db = db or Database.from_settings(settings)
        upgrade_database(db)
        predictions = PredictionStore(db, keep_review_images=settings.store_review_images)
        audit = AuditLog(db, secret=settings.audit_key, old_keys=settings.audit_keys_old)
        sink = AuditedPredictions(predictions, audit)
        keys = KeyStore(db)
        # three polls' time (at least 5 s) for our own changes to reach MLflow's mirror
        grace = timedelta(seconds=max(3 * settings.model_poll_seconds, 5.0))
        enforce = settings.registry_trust == "enforce"
        if settings.production and not enforce:
            log.error(
                "RADVIGIL_REGISTRY_TRUST=off in production: whoever can write MLflow chooses "
                "the served model (docs/registry-trust.md)"
            )
        deployments = deployments_for(enforce, db, registry, audit, grace)
        feedback = FeedbackStore(db)
        writer = PredictionWriter(sink, settings.spool_dir)
        models = ModelManager(
            registry,
            settings.model_name,
            settings.model_poll_seconds,
            settings.ort_threads,
            settings.serve_precision,
            deployments,
        )
        metrics = ServiceMetrics()
        return cls(
            settings=settings,
            db=db,
            predictions=predictions,
            feedback=feedback,
            keys=keys,
            audit=audit,
            sink=sink,
            writer=writer,
            models=models,
            batcher=MicroBatcher(
                inference.score, settings.batch_max_size, settings.batch_max_wait_ms
            ),
            metrics=metrics,
            auth=Authenticator(keys),
            limiter=RateLimiter(
                DatabaseBuckets(db) if settings.rate_limit_store == "database" else MemoryBuckets()
            ),
            monitoring=MonitoringJob(
                settings, db, predictions, feedback, audit, models, writer, metrics
            ),
            notes=NoteDesk(
                predictions,
                NoteStore(db),
                audit,
                rewriter=rewriter_from_settings(settings),
                language=settings.notes_language,
            ),
        )

    def start(self) -> None:
        self.writer.start()
        self.models.start()
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.models.stop()
        self.writer.close()
        self.heavy_pool.shutdown(wait=False, cancel_futures=True)
