"""Everything one running service holds, built once at start-up and shared by the routes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from radvigil.config import Settings
from radvigil.errors import StoreError
from radvigil.loop.deployment import deployments_for
from radvigil.loop.notes import NoteDesk, rewriter_from_settings
from radvigil.registry import Registry
from radvigil.service import inference
from radvigil.service.batcher import MicroBatcher
from radvigil.service.lifecycle import ModelManager
from radvigil.service.metrics import ServiceMetrics
from radvigil.service.monitoring_job import MonitoringJob
from radvigil.service.security import Authenticator, MemoryBuckets, RateLimiter, Sessions
from radvigil.service.sinks import AuditedPredictions
from radvigil.store import (
    AuditLog,
    Database,
    FeedbackStore,
    KeyStore,
    NoteStore,
    PredictionStore,
    PredictionWriter,
    upgrade_database,
)
from radvigil.store.ratelimits import DatabaseBuckets

log = logging.getLogger(__name__)


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
    background: set = field(default_factory=set)
    monitoring: MonitoringJob = field(init=False)
    notes: NoteDesk = field(init=False)
    explain_slots: asyncio.Semaphore = field(init=False)
    explain_waiting: int = 0
    sessions: Sessions = field(init=False)

    def __post_init__(self) -> None:
        self.explain_slots = asyncio.Semaphore(self.settings.explain_concurrency)
        self.sessions = Sessions(self.settings.session_idle_minutes * 60, 8 * 3600)

    def audit_security(self, action: str, actor: str, details: dict[str, Any]) -> None:
        """Audit a security event (failed sign-in, 403); a database outage only logs it."""
        try:
            self.audit.append(actor=actor, action=action, object_type="security", details=details)
        except StoreError as exc:
            log.warning("could not audit %s by %s: %s", action, actor, exc.message)

    @classmethod
    def build(cls, settings: Settings, registry: Registry, db: Database | None = None):
        db = db or Database.from_settings(settings)
        upgrade_database(db)
        predictions = PredictionStore(db, keep_review_images=settings.store_review_images)
        audit = AuditLog(db, secret=settings.audit_key)
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
        state = cls(
            settings=settings,
            db=db,
            predictions=predictions,
            feedback=FeedbackStore(db),
            keys=keys,
            audit=audit,
            sink=sink,
            writer=PredictionWriter(sink, settings.spool_dir),
            models=ModelManager(
                registry,
                settings.model_name,
                settings.model_poll_seconds,
                settings.ort_threads,
                settings.serve_precision,
                deployments,
            ),
            batcher=MicroBatcher(
                inference.score, settings.batch_max_size, settings.batch_max_wait_ms
            ),
            metrics=ServiceMetrics(),
            auth=Authenticator(keys),
            limiter=RateLimiter(
                DatabaseBuckets(db) if settings.rate_limit_store == "database" else MemoryBuckets()
            ),
        )
        state.monitoring = MonitoringJob(state)
        state.notes = NoteDesk(
            predictions,
            NoteStore(db),
            audit,
            rewriter=rewriter_from_settings(settings),
            language=settings.notes_language,
        )
        return state

    def start(self) -> None:
        self.writer.start()
        self.models.start()
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.models.stop()
        self.writer.close()
