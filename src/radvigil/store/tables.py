"""Table models: the database's shape, never exposed past the store (see ``schemas.py``).

Column types are chosen to mean the same on SQLite and PostgreSQL: JSON becomes JSONB on
PostgreSQL, timestamps are always UTC-aware, embeddings are little-endian float32 bytes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC; SQLite's naive values are read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class PredictionRow(Base):
    """One served prediction; ``id`` is the request id, so re-inserting it is a no-op."""

    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint("served_by IN ('champion', 'challenger', 'shadow')", name="served_by"),
        Index("ix_predictions_model_version_created_at", "model_version", "created_at"),
        Index(
            "ix_predictions_monitor_selection",
            "model_name",
            "model_version",
            "served_by",
            "created_at",
        ),
        Index("ix_predictions_served_by_created_at", "served_by", "created_at"),
        Index("ix_predictions_review_queue", "routed_to_review", "created_at", "id"),
        Index(  # the review queue's order (store/review.py REVIEW_ORDER), read in order
            "ix_predictions_review_order",
            text("(-coalesce(ood_score, -1))"),
            "confidence",
            "created_at",
            "id",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(100))
    probabilities: Mapped[dict[str, float]] = mapped_column(Json)
    predicted_class: Mapped[str] = mapped_column(String(100))
    findings: Mapped[list[str]] = mapped_column(Json)
    confidence: Mapped[float] = mapped_column(Float)
    warnings: Mapped[list[str]] = mapped_column(Json)
    image_stats: Mapped[dict[str, Any]] = mapped_column(Json)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    ood_score: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    site: Mapped[str | None] = mapped_column(String(100))
    view_position: Mapped[str | None] = mapped_column(String(20))
    study_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    routed_to_review: Mapped[bool] = mapped_column(Boolean, index=True)
    review_image: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    served_by: Mapped[str] = mapped_column(String(16))
    # Not a foreign key: a shadow record may reach the database before the one it shadows.
    shadow_of: Mapped[str | None] = mapped_column(String(64), index=True)


class FeedbackRow(Base):
    """A reviewer's label for a prediction; later rows for the same prediction supersede."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The label-selection policy that put the case in the queue ("audit" for the audit sample);
    # None when it was labelled outside a budgeted queue.
    policy: Mapped[str | None] = mapped_column(String(32))


class LabelOfferRow(Base):
    """The policy that offered a case in its site's budgeted queue, kept from the first offer so
    the label records it even after the queue (recomputed as labels are spent) has moved on."""

    __tablename__ = "label_offers"

    prediction_id: Mapped[str] = mapped_column(
        ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(100))
    policy: Mapped[str] = mapped_column(String(32))
    why: Mapped[str | None] = mapped_column(Text)
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    """An API key: only its lookup prefix and SHA-256 hash are kept, never the token."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "role IN ('clinician', 'admin', 'auditor', 'service', 'metrics')", name="role"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    rate_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEventRow(Base):
    """One link of the audit hash chain; ids are assigned by the log, gap-free from 1."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # Plain JSON (text on PostgreSQL, not JSONB) so numbers read back exactly as hashed.
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Id of the HMAC key that signed the record; NULL: a record from before key ids (0007).
    key_id: Mapped[str | None] = mapped_column(String(32))


class AuditAnchorRow(Base):
    """A signed point of the audit chain: ``head`` (moved by every append, in the same
    transaction) and ``verified`` (the last record a verification walked to)."""

    __tablename__ = "audit_anchors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MonitorResultRow(Base):
    """One detector's verdict on one window of one model version's predictions.

    A window is (kind, group, start, end); its detectors' rows are written together, and the
    unique key makes a second evaluation of the same window a no-op.
    """

    __tablename__ = "monitor_results"
    __table_args__ = (
        CheckConstraint("window_kind IN ('count', 'time')", name="window_kind"),
        UniqueConstraint(
            "model_name",
            "model_version",
            "window_kind",
            "group",
            "window_start",
            "window_end",
            "detector",
            name="uq_monitor_results_window_detector",
        ),
        Index(
            "ix_monitor_results_model_window_end",
            "model_name",
            "model_version",
            "window_kind",
            "window_end",
        ),
        Index(
            "ix_monitor_results_group_window_end",
            "model_name",
            "model_version",
            "window_kind",
            "group",
            "window_end",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    window_kind: Mapped[str] = mapped_column(String(8))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    n: Mapped[int] = mapped_column(Integer)
    group: Mapped[str] = mapped_column(String(200))
    detector: Mapped[str] = mapped_column(String(64), index=True)
    statistic: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    threshold_source: Mapped[str | None] = mapped_column(String(16))
    drift: Mapped[bool] = mapped_column(Boolean)
    effect_size: Mapped[float | None] = mapped_column(Float)
    vetoed: Mapped[str | None] = mapped_column(Text)
    skipped: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    report_path: Mapped[str | None] = mapped_column(String(1000))


class MonitorReportRow(Base):
    """The Evidently HTML report of one window, gzip-compressed and keyed by the window's first
    result, so every replica serves the same report instead of rebuilding it (issue #30)."""

    __tablename__ = "monitor_reports"

    result_id: Mapped[int] = mapped_column(
        ForeignKey("monitor_results.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sha256: Mapped[str] = mapped_column(String(64))
    html_gzip: Mapped[bytes] = mapped_column(LargeBinary)


class AlertRow(Base):
    """A monitoring alert and its life cycle; one active alert per rule and group at most."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("state IN ('open', 'acknowledged', 'resolved')", name="state"),
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
        Index(
            "uq_alerts_active_rule_group",
            "model_name",
            "model_version",
            "rule",
            "group",
            unique=True,
            sqlite_where=text("state != 'resolved'"),
            postgresql_where=text("state != 'resolved'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(100))
    detector: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text)
    statistic: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    first_window: Mapped[int | None] = mapped_column(ForeignKey("monitor_results.id"))
    last_window: Mapped[int | None] = mapped_column(ForeignKey("monitor_results.id"))
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)


class NoteRow(Base):
    """The patient note of one prediction: a draft until a clinician approves (or edits) it."""

    __tablename__ = "notes"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'approved')", name="status"),
        CheckConstraint("source IN ('template', 'rewrite', 'clinician')", name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), index=True)
    text: Mapped[str] = mapped_column(Text)
    template_text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    rewriter: Mapped[str | None] = mapped_column(String(200))
    fallback_reason: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(16))
    grade: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    generated_by: Mapped[str] = mapped_column(String(100))
    latency_ms: Mapped[float] = mapped_column(Float)
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LeaseRow(Base):
    """A named, expiring claim on a piece of work (e.g. one model's monitoring run)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RateBucketRow(Base):
    """A token bucket shared by all replicas (``RADVIGIL_RATE_LIMIT_STORE=database``)."""

    __tablename__ = "rate_buckets"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DashboardSessionRow(Base):
    """A signed-in dashboard session, shared by every replica: only the id's SHA-256 is kept.

    An API-key session names its key (deleting or revoking the key ends it); an OpenID
    Connect session names the person and the role their groups mapped to at sign-in.
    """

    __tablename__ = "dashboard_sessions"
    __table_args__ = (
        CheckConstraint("kind IN ('api_key', 'oidc')", name="kind"),
        CheckConstraint("role IN ('clinician', 'admin', 'auditor', 'service')", name="role"),
    )

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    api_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    idle_until: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class OidcLoginRow(Base):
    """An OpenID Connect sign-in under way: its state (hashed), nonce and PKCE verifier.

    Kept in the database so the identity provider may send the browser back to any replica;
    taken (deleted) by the callback, so each state is used once.
    """

    __tablename__ = "oidc_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class GateRecordRow(Base):
    """A gate verdict signed with the audit key: the only thing serving trusts a version by."""

    __tablename__ = "gate_records"
    __table_args__ = (
        CheckConstraint("verdict IN ('passed', 'failed', 'forced')", name="verdict"),
        Index("ix_gate_records_model_version", "model_name", "version", "precision"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    criteria_hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(64))
    # the card's decision rule (thresholds), signed with the graph's hash; NULL before 0018
    decision_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DeploymentStateRow(Base):
    """Which versions hold which alias, and the rollout mode: radvigil's word, not MLflow's."""

    __tablename__ = "deployment_state"
    __table_args__ = (
        CheckConstraint("mode IN ('off', 'shadow', 'canary')", name="mode"),
        CheckConstraint("canary_share >= 0 AND canary_share <= 0.5", name="canary_share"),
    )

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    champion: Mapped[str | None] = mapped_column(String(64))
    challenger: Mapped[str | None] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    canary_share: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)


class DeploymentEventRow(Base):
    """One change of a model's deployment state: who, when, what before and after."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    model_name: Mapped[str] = mapped_column(String(200), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(Json)


class PacsInstanceRow(Base):
    """One radiograph received from a PACS and what became of it under one model version.

    Keys are hashes of the DICOM UIDs, never the UIDs: a Study Instance UID identifies a patient.
    """

    __tablename__ = "pacs_instances"
    __table_args__ = (
        UniqueConstraint("sop_key", "model_version"),
        CheckConstraint("state IN ('predicted', 'refused')", name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    sop_key: Mapped[str] = mapped_column(String(64))
    study_key: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16))
    site: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    prediction_id: Mapped[str | None] = mapped_column(String(64))


class OutboxRow(Base):
    """One result object (SR, SC, FHIR bundle, ORU^R01) waiting for, or done with, delivery.

    ``claimed_by``/``claimed_until`` are the lease of the listener sending it right now.
    """

    __tablename__ = "pacs_outbox"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'dead')", name="state"),
        UniqueConstraint("sop_instance_uid", "destination"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    prediction_id: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(16))
    calling_ae: Mapped[str] = mapped_column(String(16))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    file: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PredictionHourRow(Base):
    """Rollup: predictions per hour and (model, version, site, class, served by, review flag),
    kept by the prediction writer in the insert's transaction (``store/rollups.py``).

    ``hour`` counts hours since the Unix epoch (UTC); ``site`` is ``''`` when unknown (a key
    column cannot be NULL). Pruned predictions stay counted: traffic history outlives rows.
    """

    __tablename__ = "prediction_hours"

    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(100), primary_key=True)
    predicted_class: Mapped[str] = mapped_column(String(100), primary_key=True)
    served_by: Mapped[str] = mapped_column(String(16), primary_key=True)
    routed_to_review: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class LatencyHourRow(Base):
    """Rollup: answered (not shadow) predictions per hour and latency bin, the histogram the
    traffic view's percentiles come from; bin ``b`` holds ``[1.05^b, 1.05^(b+1))`` ms."""

    __tablename__ = "latency_hours"

    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class LabelDayRow(Base):
    """Rollup: answered predictions' latest labels per day of prediction time and
    (model, version, site, predicted class, label): the performance page's confusion counts.

    Kept by :meth:`FeedbackStore.add` in the label's transaction: a correction moves its
    prediction from the old label's cell to the new one, so ``n`` may reach 0.
    """

    __tablename__ = "label_days"

    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(100), primary_key=True)
    predicted_class: Mapped[str] = mapped_column(String(100), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class PulledInstanceRow(Base):
    """One instance pull mode fetched from a PACS (hashed UIDs), so a re-poll never fetches it."""

    __tablename__ = "pacs_pulled"
    __table_args__ = (
        UniqueConstraint("source", "sop_key"),
        CheckConstraint("outcome IN ('stored', 'ignored', 'refused')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pulled_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    source: Mapped[str] = mapped_column(String(16))
    sop_key: Mapped[str] = mapped_column(String(64))
    study_key: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)


class PullCheckpointRow(Base):
    """Per pull source: the date its last successful poll started, and the last poll's error."""

    __tablename__ = "pacs_pull_checkpoints"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    since: Mapped[date | None] = mapped_column(Date)
    polled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class IntakeCountRow(Base):
    """Instances received per calling AE (or pull source) and intake outcome, and when last."""

    __tablename__ = "pacs_intake_counts"
    __table_args__ = (
        CheckConstraint("outcome IN ('stored', 'ignored', 'refused')", name="outcome"),
    )

    calling_ae: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    instances: Mapped[int] = mapped_column(Integer)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
