"""Dashboard sessions and pending OpenID Connect sign-ins, in the database every replica shares.

A session id is 256 random bits shown once, in the browser's cookie; only its SHA-256 is
stored (a fast hash is enough for an unguessable secret, as for API keys). A session ends at
sign-out (the row is deleted), after ``idle_seconds`` without use, at ``max_seconds`` after it
began, or, for an API-key session, when its key is revoked. Because the rows live in the
metadata database, a session made on one replica works on the others and survives restarts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, or_, select

from radvigil.store.db import Database
from radvigil.store.keys import DEFAULT_RATE_LIMIT, hash_token
from radvigil.store.schemas import ApiKeyPublic, Role, utcnow
from radvigil.store.tables import ApiKeyRow, DashboardSessionRow, OidcLoginRow

SessionKind = Literal["api_key", "oidc"]
OIDC_NAME_PREFIX = "oidc:"
LOGIN_SECONDS = 600  # how long a started OpenID Connect sign-in may take
SESSION_MAX_SECONDS = 8 * 3600  # absolute lifetime of a session, however busy


@dataclass(frozen=True)
class DashboardSession:
    """A live session: who is signed in, with which role, and as which caller.

    ``caller`` is the API key of a key session. For an OpenID Connect session it is a key-shaped
    principal (id 0, prefix ``oidc``, the default rate limit) so that route functions and the
    rate limiter, which take the caller as an :class:`ApiKeyPublic`, serve both kinds alike.
    """

    kind: SessionKind
    caller: ApiKeyPublic
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class PendingLogin:
    """What the callback of a started OpenID Connect sign-in needs to finish it."""

    nonce: str
    code_verifier: str


class SessionStore:
    """Create, resolve (and keep alive) and delete dashboard sessions."""

    def __init__(
        self,
        db: Database,
        idle_seconds: float,
        max_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.idle = timedelta(seconds=idle_seconds)
        self.lifetime = timedelta(seconds=max_seconds)
        self.clock = clock

    def create_for_key(self, key: ApiKeyPublic) -> str:
        """A new session for an API key; returns the session id (shown only to the browser)."""
        return self._create("api_key", key.name, key.role, key.id)

    def create_for_person(self, name: str, role: Role) -> str:
        """A new session for a person signed in through OpenID Connect, named ``oidc:<name>``."""
        return self._create("oidc", f"{OIDC_NAME_PREFIX}{name}", role, None)

    def _create(self, kind: SessionKind, name: str, role: str, key_id: int | None) -> str:
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.session("create dashboard session") as session:
            session.execute(delete(DashboardSessionRow).where(self._ended(now)))
            session.add(
                DashboardSessionRow(
                    id_hash=hash_token(session_id),
                    kind=kind,
                    name=name,
                    role=role,
                    api_key_id=key_id,
                    created_at=now,
                    idle_until=now + self.idle,
                    expires_at=now + self.lifetime,
                )
            )
        return session_id

    def get(self, session_id: str | None) -> DashboardSession | None:
        """The live session of this id (its idle time restarts), or None; ended ones are deleted."""
        if not session_id:
            return None
        now = self.clock()
        with self.db.session("read dashboard session") as session:
            found = session.execute(
                select(DashboardSessionRow, ApiKeyRow)
                .outerjoin(ApiKeyRow, ApiKeyRow.id == DashboardSessionRow.api_key_id)
                .where(DashboardSessionRow.id_hash == hash_token(session_id))
            ).first()
            if found is None:
                return None
            row, key_row = found
            key_gone = row.kind == "api_key" and (key_row is None or key_row.revoked_at)
            if key_gone or now >= row.idle_until or now >= row.expires_at:
                session.delete(row)
                return None
            row.idle_until = now + self.idle
            caller = (
                ApiKeyPublic.model_validate(key_row)
                if key_row is not None
                else ApiKeyPublic(
                    id=0,
                    name=row.name,
                    role=row.role,
                    prefix="oidc",
                    rate_limit=DEFAULT_RATE_LIMIT,
                    created_at=row.created_at,
                    revoked_at=None,
                )
            )
            return DashboardSession(row.kind, caller, row.created_at, row.expires_at)  # type: ignore[arg-type]

    def delete(self, session_id: str | None) -> bool:
        """End a session (sign-out); True when there was one."""
        if not session_id:
            return False
        with self.db.session("delete dashboard session") as session:
            deleted = session.execute(
                delete(DashboardSessionRow).where(
                    DashboardSessionRow.id_hash == hash_token(session_id)
                )
            )
            gone = cast(CursorResult, deleted).rowcount
        return bool(gone)

    def count(self) -> int:
        """Sessions stored, ended ones not yet purged included (for tests and metrics)."""
        with self.db.session("count dashboard sessions") as session:
            return session.scalar(select(func.count()).select_from(DashboardSessionRow)) or 0

    def _ended(self, now: datetime) -> ColumnElement[bool]:
        return or_(DashboardSessionRow.idle_until <= now, DashboardSessionRow.expires_at <= now)

    def begin_login(self, state: str, nonce: str, code_verifier: str) -> None:
        """Remember a started OpenID Connect sign-in under its ``state`` for a few minutes."""
        now = self.clock()
        with self.db.session("start OpenID Connect sign-in") as session:
            session.execute(delete(OidcLoginRow).where(OidcLoginRow.expires_at <= now))
            session.add(
                OidcLoginRow(
                    state_hash=hash_token(state),
                    nonce=nonce,
                    code_verifier=code_verifier,
                    expires_at=now + timedelta(seconds=LOGIN_SECONDS),
                )
            )

    def take_login(self, state: str | None) -> PendingLogin | None:
        """The sign-in started with ``state``, removed so it cannot be used twice; else None."""
        if not state:
            return None
        now = self.clock()
        with self.db.session("finish OpenID Connect sign-in") as session:
            row = session.get(OidcLoginRow, hash_token(state))
            if row is None:
                return None
            login, expires_at = PendingLogin(row.nonce, row.code_verifier), row.expires_at
            deleted = session.execute(
                delete(OidcLoginRow).where(OidcLoginRow.state_hash == row.state_hash)
            )
            taken = cast(CursorResult, deleted).rowcount
        return login if taken and now < expires_at else None  # one callback wins a replayed state
