"""Pydantic models at the store's boundary, kept apart from the table models in ``tables.py``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Role = Literal["clinician", "admin", "auditor", "service", "metrics"]
ServedBy = Literal["champion", "challenger", "shadow"]

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (every stored time is)."""
    return datetime.now(UTC)


def new_request_id() -> str:
    """A random UUID4 string, the default request id."""
    return str(uuid.uuid4())


class PredictionRecord(BaseModel):
    """Everything logged about one served prediction (no PHI: the study is only a hash).

    ``review_image`` holds de-identified PNG bytes and is kept only when the store is
    configured to keep review images; reads leave it empty unless asked for.
    """

    model_config = ConfigDict(
        frozen=True, allow_inf_nan=False, ser_json_bytes="base64", val_json_bytes="base64"
    )

    id: Id = Field(default_factory=new_request_id)
    created_at: AwareDatetime = Field(default_factory=utcnow)
    model_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    model_version: Version
    task: Name
    probabilities: dict[str, float]
    predicted_class: Name
    findings: list[str] = Field(default_factory=list)
    confidence: float
    warnings: list[str] = Field(default_factory=list)
    image_stats: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    embedding: list[float] | None = None
    ood_score: float | None = None
    latency_ms: float = Field(ge=0)
    site: Annotated[str, StringConstraints(max_length=100)] | None = None
    view_position: Annotated[str, StringConstraints(max_length=20)] | None = None
    study_hash: Annotated[str, StringConstraints(max_length=64)] | None = None
    routed_to_review: bool = False
    review_image: bytes | None = Field(default=None, repr=False)
    served_by: ServedBy = "champion"
    shadow_of: Id | None = None


class FeedbackCreate(BaseModel):
    """A label for a prediction as a reviewer submits it (the reviewer comes from the key)."""

    prediction_id: Id
    label: Name
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None
    policy: Annotated[str, StringConstraints(max_length=32)] | None = None


class FeedbackPublic(BaseModel):
    """A stored label."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    prediction_id: str
    label: str
    reviewer: str
    comment: str | None
    created_at: AwareDatetime
    policy: str | None = None


class ApiKeyPublic(BaseModel):
    """An API key as it may be shown: name, role and prefix, never the token or its hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    prefix: str
    rate_limit: int
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class AuditCreate(BaseModel):
    """An audit record to append: who did what to which object (``details`` hold no PHI)."""

    actor: Name
    action: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    object_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    object_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    model_version: Annotated[str, StringConstraints(max_length=200)] | None = None
    request_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class AuditEvent(BaseModel):
    """One record of the audit log with its place in the hash chain."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    model_version: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = None


class VerifyResult(BaseModel):
    """The outcome of walking the audit chain.

    ``head_hash`` is the hash of the last record. The database keeps a signed head too, so
    removing records from the end shows; a copy kept elsewhere (a ticket, a log line) also
    catches the rollback of the whole database to an older state.
    """

    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    last_id: int | None = None
    head_hash: str | None = None
    from_id: int = 0  # the walk began after this record (a signed checkpoint); 0: from the start
