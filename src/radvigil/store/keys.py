"""API keys and roles: who may call the service, and what each role may do.

A token looks like ``rvk_<prefix>_<secret>``. Only the prefix (to find the row) and the
SHA-256 of the whole token are stored; the token is shown once, at creation. A 256-bit random
secret makes a fast hash safe here: there is nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, cast, get_args

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from radvigil.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from radvigil.store.audit import AuditLog
from radvigil.store.audit_coverage import api_key_digest
from radvigil.store.db import Database
from radvigil.store.schemas import ApiKeyPublic, Role, utcnow
from radvigil.store.tables import ApiKeyRow

Action = Literal[
    "predict",
    "label",
    "read_predictions",
    "read_audit",
    "manage_alerts",
    "manage_models",
    "manage_keys",
    "read_metrics",
    "manage_pacs",
]
ROLES: tuple[Role, ...] = get_args(Role)
ACTIONS: tuple[Action, ...] = get_args(Action)

ROLE_MATRIX: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {
        "clinician": frozenset(
            {"predict", "label", "read_predictions", "manage_alerts", "read_metrics"}
        ),
        "service": frozenset({"predict", "read_predictions", "read_metrics"}),
        "auditor": frozenset({"read_predictions", "read_audit", "read_metrics"}),
        "admin": frozenset(ACTIONS),
        # The Prometheus scrape and readiness-probe key: /metrics and /ready, nothing else.
        "metrics": frozenset({"read_metrics"}),
    }
)
DEFAULT_RATE_LIMIT = 120
TOKEN_PREFIX = "rvk"


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    return role


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may perform ``action`` (see :data:`ROLE_MATRIX`)."""
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; valid actions: {', '.join(ACTIONS)}")
    return action in ROLE_MATRIX[_check_role(role)]


def require(role: str, action: str) -> None:
    """Raise ForbiddenError unless ``role`` may perform ``action``."""
    if not allowed(role, action):
        raise ForbiddenError(f"role {role!r} may not {action.replace('_', ' ')}")


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token: what is stored and compared in constant time."""
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    """Creates, authenticates, lists and revokes API keys."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, name: str, role: str, *, rate_limit: int = DEFAULT_RATE_LIMIT, actor: str = "system"
    ) -> tuple[str, ApiKeyPublic]:
        """Create a key and return ``(token, key)``; the token cannot be recovered later.

        The creation is audited (``key.create``) with ``actor``, whoever calls this.

        Raises:
            InputError: unknown role, empty name or non-positive rate limit.
            ConflictError: a key (even a revoked one) already has this name; names stay
                unique so the audit log's actors stay unambiguous.
        """
        name = name.strip()
        if not 0 < len(name) <= 100:
            raise InputError("a key name must be 1 to 100 characters")
        if rate_limit <= 0:
            raise InputError("rate limit must be a positive number of requests per minute")
        prefix = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(
            name=name,
            role=_check_role(role),
            prefix=prefix,
            key_hash=hash_token(token),
            rate_limit=rate_limit,
            created_at=utcnow(),
        )
        with self.db.session("create API key", immediate=True) as session:
            if session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name)) is not None:
                raise ConflictError(f"an API key named {name!r} already exists")
            session.add(row)
            try:
                session.flush()
            except IntegrityError as exc:
                raise ConflictError(f"an API key named {name!r} already exists") from exc
            key = ApiKeyPublic.model_validate(row)
            row_sha256 = api_key_digest(row)
        AuditLog(self.db).append(
            actor=actor,
            action="key.create",
            object_type="api_key",
            object_id=key.name,
            details={
                "role": key.role,
                "prefix": key.prefix,
                "rate_limit": key.rate_limit,
                "row_sha256": row_sha256,
            },
        )
        return token, key

    def authenticate(self, token: str) -> ApiKeyPublic | None:
        """The active key this token belongs to, or None (unknown, malformed or revoked)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        with self.db.session("authenticate API key") as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == parts[1])).first()
            if row is None or not hmac.compare_digest(row.key_hash, hash_token(token)):
                return None
            return None if row.revoked_at is not None else ApiKeyPublic.model_validate(row)

    def get(self, name: str) -> ApiKeyPublic:
        """A key by name, revoked or not (NotFoundError if there is none)."""
        with self.db.session("read API key") as session:
            row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.name == name)).first()
            if row is None:
                raise NotFoundError(f"no API key named {name!r}")
            return ApiKeyPublic.model_validate(row)

    def list(self, *, include_revoked: bool = True) -> list[ApiKeyPublic]:
        """All keys in creation order (never their tokens or hashes)."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.id)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self.db.session("list API keys") as session:
            return [ApiKeyPublic.model_validate(row) for row in session.scalars(query)]

    def revoke(self, name: str, *, actor: str = "system") -> ApiKeyPublic:
        """Revoke a key by name from now on (audited); revoking twice keeps the first time."""
        with self.db.session("revoke API key") as session:
            result = session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            revoked = cast(CursorResult[Any], result).rowcount
        key = self.get(name)
        if revoked:
            AuditLog(self.db).append(
                actor=actor, action="key.revoke", object_type="api_key", object_id=name
            )
        return key
