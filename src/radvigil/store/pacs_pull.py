"""Pull-mode bookkeeping: which instances each source already gave us, and its checkpoint.

A row in ``pacs_pulled`` is written once the instance is safely in the spool (or was refused
or ignored there), so the next poll skips it: nothing is fetched twice. Never predicting twice
is the worker's guarantee (``pacs_instances``), which also covers a crash between the spool
write and this row. Rows hold hashes of UIDs only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import select

from radvigil.store.db import Database
from radvigil.store.schemas import utcnow
from radvigil.store.tables import PullCheckpointRow, PulledInstanceRow


class PullCheckpoint(BaseModel):
    """Where a source's polls stand (``since``: start date of its last successful poll)."""

    model_config = ConfigDict(from_attributes=True)

    source: str
    since: date | None = None
    polled_at: AwareDatetime
    last_error: str | None = None


class PullStore:
    """Reads and writes ``pacs_pulled`` and ``pacs_pull_checkpoints``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def pulled(self, source: str, sop_keys: Iterable[str]) -> set[str]:
        """The keys among ``sop_keys`` this source already gave us."""
        keys = list(sop_keys)
        if not keys:
            return set()
        with self.db.session("read pulled instances") as session:
            return set(
                session.scalars(
                    select(PulledInstanceRow.sop_key).where(
                        PulledInstanceRow.source == source, PulledInstanceRow.sop_key.in_(keys)
                    )
                )
            )

    def mark(
        self, source: str, sop_key: str, study_key: str, outcome: str, reason: str | None
    ) -> None:
        """Remember one fetched instance and what the intake made of it."""
        with self.db.session("record a pulled instance", immediate=True) as session:
            exists = session.scalar(
                select(PulledInstanceRow.id).where(
                    PulledInstanceRow.source == source, PulledInstanceRow.sop_key == sop_key
                )
            )
            if exists is None:
                session.add(
                    PulledInstanceRow(
                        pulled_at=utcnow(),
                        source=source,
                        sop_key=sop_key,
                        study_key=study_key,
                        outcome=outcome,
                        reason=reason,
                    )
                )

    def checkpoint(self, source: str) -> PullCheckpoint | None:
        with self.db.session("read a pull checkpoint") as session:
            row = session.get(PullCheckpointRow, source)
            return None if row is None else PullCheckpoint.model_validate(row)

    def checkpoints(self) -> list[PullCheckpoint]:
        with self.db.session("read pull checkpoints") as session:
            rows = session.scalars(select(PullCheckpointRow).order_by(PullCheckpointRow.source))
            return [PullCheckpoint.model_validate(r) for r in rows]

    def polled(self, source: str, since: date | None, error: str | None = None) -> None:
        """Record a poll: a success moves ``since`` on; a failure keeps it and notes the error."""
        with self.db.session("record a poll", immediate=True) as session:
            row = session.get(PullCheckpointRow, source)
            if row is None:
                row = PullCheckpointRow(source=source, since=None, polled_at=utcnow())
                session.add(row)
            row.polled_at, row.last_error = utcnow(), error
            if error is None:
                row.since = since
