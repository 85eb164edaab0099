"""Signed gate records and the deployment state: what serving trusts, kept in radvigil's database.

MLflow holds the artifacts and mirrors the aliases for humans; whether a version may serve,
and as what, is read from these tables (see ``docs/registry-trust.md``). Signing and checking
the records is the loop layer's job (``loop/gate_records.py``); this module only stores them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from radvigil.store.db import Database
from radvigil.store.schemas import utcnow
from radvigil.store.tables import DeploymentEventRow, DeploymentStateRow, GateRecordRow

GateVerdict = Literal["passed", "failed", "forced"]
Mode = Literal["off", "shadow", "canary"]
MAX_CANARY_SHARE = 0.5


class GateRecordCreate(BaseModel):
    """A gate verdict with its HMAC, as signed by ``loop.gate_records.sign_gate``."""

    model_name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    precision: str = Field("fp32", max_length=16)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    verdict: GateVerdict
    criteria_hash: str = Field(max_length=64)
    actor: str = Field(min_length=1, max_length=100)
    key_id: str = Field(min_length=1, max_length=32)
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")
    decision_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the card's decision rule (thresholds), signed with the graph's; "
        "None on records signed before migration 0018.",
    )


class GateRecord(GateRecordCreate):
    """A stored gate record."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime


class DeploymentState(BaseModel):
    """Which version holds each alias of one registered model, and how traffic is shared."""

    model_config = ConfigDict(from_attributes=True)

    model_name: str
    champion: str | None = None
    challenger: str | None = None
    previous: str | None = None
    mode: Mode = "off"
    canary_share: float = Field(0.0, ge=0.0, le=MAX_CANARY_SHARE)
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None
    reason: str | None = None

    def alias(self, name: str) -> str | None:
        """The version an alias (champion, challenger, previous) points at, if any."""
        return getattr(self, name) if name in ("champion", "challenger", "previous") else None


class DeploymentEvent(BaseModel):
    """One stored change of a deployment state."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime
    model_name: str
    actor: str
    action: str
    details: dict[str, Any]


class GateRecordStore:
    """Appends and reads signed gate records; the newest record of a version is its verdict."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, record: GateRecordCreate) -> GateRecord:
        row = GateRecordRow(**record.model_dump(), created_at=utcnow())
        with self.db.session("write gate record") as session:
            session.add(row)
            session.flush()
            return GateRecord.model_validate(row)

    def latest(self, name: str, version: str, precision: str = "fp32") -> GateRecord | None:
        """The newest gate record of a version's graph, or None when it was never gated."""
        query = (
            select(GateRecordRow)
            .where(GateRecordRow.model_name == name)
            .where(GateRecordRow.version == str(version))
            .where(GateRecordRow.precision == precision)
            .order_by(GateRecordRow.id.desc())
            .limit(1)
        )
        with self.db.session("read gate record") as session:
            row = session.scalars(query).first()
            return GateRecord.model_validate(row) if row is not None else None


class DeploymentStore:
    """Reads and writes the ``deployment_state`` row of a model and its event history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, name: str) -> DeploymentState:
        """The model's state; an empty one (no aliases, rollout off) when none was written."""
        with self.db.session("read deployment state") as session:
            row = session.get(DeploymentStateRow, name)
            return DeploymentState.model_validate(row) if row else DeploymentState(model_name=name)

    def save(
        self, state: DeploymentState, *, actor: str, action: str, details: dict[str, Any]
    ) -> DeploymentState:
        """Write the whole state and one event for it, in one transaction."""
        now = utcnow()
        values = state.model_dump(exclude={"model_name", "updated_at", "updated_by"})
        with self.db.session("write deployment state", immediate=True) as session:
            row = session.get(DeploymentStateRow, state.model_name, with_for_update=True)
            before = DeploymentState.model_validate(row).model_dump(mode="json") if row else None
            if row is None:
                row = DeploymentStateRow(model_name=state.model_name)
                session.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at, row.updated_by = now, actor
            session.flush()
            after = DeploymentState.model_validate(row)
            session.add(
                DeploymentEventRow(
                    created_at=now,
                    model_name=state.model_name,
                    actor=actor,
                    action=action,
                    details={
                        **details,
                        "before": before,
                        "after": after.model_dump(mode="json"),
                    },
                )
            )
            return after

    def events(self, name: str, limit: int = 50) -> list[DeploymentEvent]:
        """The model's newest events first."""
        query = (
            select(DeploymentEventRow)
            .where(DeploymentEventRow.model_name == name)
            .order_by(DeploymentEventRow.id.desc())
            .limit(limit)
        )
        with self.db.session("read deployment events") as session:
            return [DeploymentEvent.model_validate(row) for row in session.scalars(query)]
