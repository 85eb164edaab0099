"""PACS bookkeeping: which radiographs were handled under which model version, and the outbox.

The outbox is the durable half of exactly-once delivery: a result object is recorded here in
the same transaction as its source instance, and marked delivered only after the PACS said so.
A crash between the two re-sends the same object (same SOP Instance UID), which the PACS
stores once. Rows hold hashes of UIDs and derived UIDs only, never patient data.

Several listeners may share one outbox: :meth:`PacsStore.claim` leases due rows to one holder
in one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so claimers pass each other; the
write lock of ``BEGIN IMMEDIATE`` on SQLite), and only the holder may then settle them. The
lease is a column with an expiry rather than a held row lock, so no transaction stays open
while a slow PACS answers, and a crashed holder's rows come back when the lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import func, or_, select, update

from radvigil.store.db import Database
from radvigil.store.schemas import utcnow
from radvigil.store.tables import OutboxRow, PacsInstanceRow

OutboxState = Literal["pending", "delivered", "dead"]
OUTBOX_STATES: tuple[OutboxState, ...] = get_args(OutboxState)
OutboxKind = Literal["sr", "sc", "fhir", "oru"]
Destination = Literal["cstore", "stowrs", "fhir", "hl7"]


class InstanceCreate(BaseModel):
    """One handled radiograph: hashed UIDs, the model version, what became of it."""

    sop_key: str
    study_key: str
    model_version: str
    calling_ae: str
    site: str | None = None
    state: Literal["predicted", "refused"]
    reason: str | None = None
    prediction_id: str | None = None


class OutboxCreate(BaseModel):
    """A built result object to deliver (its bytes live in the DICOM spool's outgoing/).

    ``sop_instance_uid`` is the object's derived UID (for FHIR and HL7: one derived from the
    prediction), unique per destination.
    """

    prediction_id: str
    model_name: str
    model_version: str
    kind: OutboxKind
    destination: Destination
    calling_ae: str
    sop_instance_uid: str
    file: str


class OutboxEntry(OutboxCreate):
    """A stored outbox row."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: AwareDatetime
    updated_at: AwareDatetime
    state: OutboxState
    attempts: int
    next_attempt_at: AwareDatetime
    last_error: str | None = None
    delivered_at: AwareDatetime | None = None
    claimed_by: str | None = None
    claimed_until: AwareDatetime | None = None


class PacsStore:
    """Reads and writes ``pacs_instances`` and ``pacs_outbox``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def seen(self, sop_key: str, model_version: str) -> bool:
        """Whether this instance was already handled under this model version."""
        with self.db.session("read PACS instances") as session:
            return (
                session.scalar(
                    select(PacsInstanceRow.id).where(
                        PacsInstanceRow.sop_key == sop_key,
                        PacsInstanceRow.model_version == model_version,
                    )
                )
                is not None
            )

    def record(self, instance: InstanceCreate, outbox: Sequence[OutboxCreate] = ()) -> None:
        """Store a handled instance and its result objects in one transaction."""
        now = utcnow()
        with self.db.session("record a PACS instance", immediate=True) as session:
            session.add(PacsInstanceRow(created_at=now, **instance.model_dump()))
            for item in outbox:
                session.add(
                    OutboxRow(
                        created_at=now,
                        updated_at=now,
                        state="pending",
                        attempts=0,
                        next_attempt_at=now,
                        **item.model_dump(),
                    )
                )

    def claim(
        self, holder: str, lease_s: float, limit: int = 10, due_by: datetime | None = None
    ) -> list[OutboxEntry]:
        """Lease up to ``limit`` due rows, oldest first, to ``holder`` for ``lease_s`` seconds.

        A row is due when pending, its next attempt has come by ``due_by`` (default now) and
        nobody holds an unexpired lease on it. Two concurrent claimers never get the same row.
        """
        now = utcnow()
        free = or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now)
        with self.db.session("claim outbox rows", immediate=True) as session:
            ids = session.scalars(
                select(OutboxRow.id)
                .where(
                    OutboxRow.state == "pending",
                    OutboxRow.next_attempt_at <= (due_by or now),
                    free,
                )
                .order_by(OutboxRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not ids:
                return []
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids))
                .values(claimed_by=holder, claimed_until=now + timedelta(seconds=lease_s))
            )
            rows = session.scalars(
                select(OutboxRow).where(OutboxRow.id.in_(ids)).order_by(OutboxRow.id)
            ).all()
            return [OutboxEntry.model_validate(r) for r in rows]

    def delivered(self, entry_id: int, holder: str) -> bool:
        """Mark a row delivered if ``holder`` still holds it (False: another listener took it)."""
        now = utcnow()
        values = {
            "state": "delivered",
            "attempts": OutboxRow.attempts + 1,
            "delivered_at": now,
            "updated_at": now,
            "last_error": None,
            "claimed_by": None,
            "claimed_until": None,
        }
        return self._settle(entry_id, holder, values, "mark an outbox row delivered")

    def failed(self, entry_id: int, holder: str, error: str, retry_in_s: float | None) -> bool:
        """Count a failed attempt; ``retry_in_s`` None moves the row to dead-letter.

        Only if ``holder`` still holds the row (False: another listener took it).
        """
        now = utcnow()
        values: dict = {
            "attempts": OutboxRow.attempts + 1,
            "updated_at": now,
            "last_error": error,
            "claimed_by": None,
            "claimed_until": None,
        }
        if retry_in_s is None:
            values["state"] = "dead"
        else:
            values["next_attempt_at"] = now + timedelta(seconds=retry_in_s)
        return self._settle(entry_id, holder, values, "record a failed delivery")

    def _settle(self, entry_id: int, holder: str, values: dict, doing: str) -> bool:
        query = update(OutboxRow).where(
            OutboxRow.id == entry_id, OutboxRow.state == "pending", OutboxRow.claimed_by == holder
        )
        with self.db.transaction(doing, immediate=True) as conn:
            return bool(conn.execute(query.values(**values)).rowcount)

    def retry(self, ids: Sequence[int] = ()) -> int:
        """Put dead-lettered rows (all, or ``ids``) back to pending, due now, attempts reset."""
        now = utcnow()
        query = update(OutboxRow).where(OutboxRow.state == "dead")
        if ids:
            query = query.where(OutboxRow.id.in_(list(ids)))
        with self.db.transaction("retry dead-lettered results", immediate=True) as conn:
            return conn.execute(
                query.values(
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    updated_at=now,
                    claimed_by=None,
                    claimed_until=None,
                )
            ).rowcount

    def holders(self) -> list[str]:
        """Names of the listeners holding leases on pending rows (expired ones included)."""
        query = (
            select(OutboxRow.claimed_by)
            .where(OutboxRow.state == "pending", OutboxRow.claimed_by.is_not(None))
            .distinct()
        )
        with self.db.session("read outbox leases") as session:
            return [h for h in session.scalars(query).all() if h is not None]

    def release(self, holder: str) -> int:
        """Drop every lease ``holder`` has (a listener known to be gone); how many rows."""
        with self.db.transaction("release outbox leases", immediate=True) as conn:
            return conn.execute(
                update(OutboxRow)
                .where(OutboxRow.claimed_by == holder, OutboxRow.state == "pending")
                .values(claimed_by=None, claimed_until=None)
            ).rowcount

    def entries(self, state: OutboxState | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Newest outbox rows first, optionally of one state."""
        query = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(OutboxRow.state == state)
        with self.db.session("read the outbox") as session:
            return [OutboxEntry.model_validate(r) for r in session.scalars(query).all()]

    def counts(self) -> dict[str, int]:
        """Outbox rows per state (every state present, zero when none)."""
        with self.db.session("count the outbox") as session:
            found = dict(
                session.execute(
                    select(OutboxRow.state, func.count()).group_by(OutboxRow.state)
                ).all()
            )
        return {s: int(found.get(s, 0)) for s in ("pending", "delivered", "dead")}

    def instance_counts(self) -> dict[tuple[str, str], int]:
        """Handled instances per (calling AE, state): the per-AE traffic."""
        with self.db.session("count PACS instances") as session:
            rows = session.execute(
                select(PacsInstanceRow.calling_ae, PacsInstanceRow.state, func.count()).group_by(
                    PacsInstanceRow.calling_ae, PacsInstanceRow.state
                )
            ).all()
        return {(ae, state): int(n) for ae, state, n in rows}
