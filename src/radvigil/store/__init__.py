"""The metadata database: predictions, feedback, API keys, the audit log, monitor results,
alerts and patient notes.

SQLite under the project home by default, PostgreSQL in production; the schema is managed
by the Alembic migrations in ``store/migrations`` (:func:`upgrade_database`). Callers use the
repositories below and the Pydantic models in ``schemas``; table models never leave the store.
"""

from __future__ import annotations

from radvigil.store.audit import AuditLog
from radvigil.store.db import Database
from radvigil.store.feedback import FeedbackStore
from radvigil.store.keys import ACTIONS, ROLE_MATRIX, ROLES, KeyStore, allowed, require
from radvigil.store.leases import LeaseStore
from radvigil.store.migrate import check_schema, current_revision, head_revision, upgrade_database
from radvigil.store.monitor_results import (
    AlertCreate,
    AlertPublic,
    AlertStore,
    MonitorResultCreate,
    MonitorResultPublic,
    MonitorResultStore,
)
from radvigil.store.note_store import NoteCreate, NotePublic, NoteStore
from radvigil.store.predictions import PredictionKey, PredictionStore
from radvigil.store.review import ReviewQueue
from radvigil.store.schemas import (
    ApiKeyPublic,
    AuditCreate,
    AuditEvent,
    FeedbackCreate,
    FeedbackPublic,
    PredictionRecord,
    VerifyResult,
)
from radvigil.store.spool import Spool
from radvigil.store.writer import PredictionWriter, WriterStats

__all__ = [
    "ACTIONS",
    "ROLES",
    "ROLE_MATRIX",
    "AlertCreate",
    "AlertPublic",
    "AlertStore",
    "ApiKeyPublic",
    "AuditCreate",
    "AuditEvent",
    "AuditLog",
    "Database",
    "FeedbackCreate",
    "FeedbackPublic",
    "FeedbackStore",
    "KeyStore",
    "LeaseStore",
    "MonitorResultCreate",
    "MonitorResultPublic",
    "MonitorResultStore",
    "NoteCreate",
    "NotePublic",
    "NoteStore",
    "PredictionKey",
    "PredictionRecord",
    "PredictionStore",
    "PredictionWriter",
    "ReviewQueue",
    "Spool",
    "VerifyResult",
    "WriterStats",
    "allowed",
    "check_schema",
    "current_revision",
    "head_revision",
    "require",
    "upgrade_database",
]
