"""Leases: a named claim held by one holder until it is released or expires.

Monitoring workers (one per replica, or a spare) claim ``monitor:<model>`` before evaluating
windows, so each window is evaluated by one worker only. The claim is a single conditional
INSERT or UPDATE, atomic on PostgreSQL (row lock, WHERE re-checked) and on SQLite (the write
lock), so no advisory-lock dialect code is needed; a crashed holder's lease simply expires.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from radvigil.errors import StoreError
from radvigil.store.db import Database
from radvigil.store.schemas import utcnow
from radvigil.store.tables import LeaseRow


class LeaseStore:
    """Claim, renew and release named leases in the metadata database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take (or renew) ``name`` for ``ttl_s`` seconds; False while someone else holds it."""
        now = utcnow()
        expires = now + timedelta(seconds=ttl_s)
        with self.db.transaction(f"claim lease {name}", immediate=True) as conn:
            taken = conn.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name)
                .where((LeaseRow.expires_at < now) | (LeaseRow.holder == holder))
                .values(holder=holder, acquired_at=now, expires_at=expires)
            ).rowcount
        if taken:
            return True
        try:
            with self.db.transaction(f"claim lease {name}", immediate=True) as conn:
                conn.execute(
                    insert(LeaseRow).values(
                        name=name, holder=holder, acquired_at=now, expires_at=expires
                    )
                )
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # the row exists: someone holds it
                return False
            raise
        return True

    def release(self, name: str, holder: str) -> None:
        """Give ``name`` back (only if ``holder`` still holds it)."""
        with self.db.transaction(f"release lease {name}", immediate=True) as conn:
            conn.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def holder(self, name: str) -> str | None:
        """Who holds ``name`` now (None when free or expired)."""
        with self.db.transaction(f"read lease {name}") as conn:
            row = conn.execute(
                LeaseRow.__table__.select().where(
                    LeaseRow.name == name, LeaseRow.expires_at >= utcnow()
                )
            ).first()
        return None if row is None else row.holder
