"""Dependency aliases: the service state and an authenticated, authorised, rate-limited key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from radvigil.errors import ForbiddenError
from radvigil.service.state import ServiceState
from radvigil.store import ApiKeyPublic

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


async def get_state(request: Request) -> ServiceState:
    """Async (no I/O): FastAPI runs a plain ``def`` dependency in its thread pool."""
    return request.app.state.radvigil


State = Annotated[ServiceState, Depends(get_state)]

# Ids and offsets bound for the database's INTEGER columns (32-bit on PostgreSQL): a larger
# number is a 422, not an overflow (500) in the driver.
MAX_DB_INT = 2**31 - 1


def requires(action: str, cost: float = 1.0) -> Callable[..., Awaitable[ApiKeyPublic]]:
    """A dependency: the caller's key, charged against its rate and checked for ``action``.

    Async: a recently verified key comes from the authenticator's cache on the event loop; only
    a cache miss goes to the database, in a worker thread.
    """

    async def dependency(
        state: State,
        header: Annotated[str | None, Depends(_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    ) -> ApiKeyPublic:
        token = header or (bearer.credentials if bearer else None)
        key = state.auth.cached(token)
        if key is None:
            key = await asyncio.to_thread(state.auth.authenticate, token)
        # Charged before the role check: a flood of forbidden calls meets 429 before each one
        # writes an audit record (and takes the audit lock every prediction write needs).
        state.limiter.take(key, cost)
        try:
            state.auth.authorise(key, action)
        except ForbiddenError:
            await asyncio.to_thread(
                state.audit_security,
                "auth.forbidden",
                key.name,
                {"action": action, "role": key.role},
            )
            raise
        return key

    return dependency


Predictor = Annotated[ApiKeyPublic, Depends(requires("predict"))]
Reader = Annotated[ApiKeyPublic, Depends(requires("read_predictions"))]
# /metrics and /ready: every role, including `metrics` (the scrape key, which reads nothing else).
MetricsReader = Annotated[ApiKeyPublic, Depends(requires("read_metrics"))]
Labeller = Annotated[ApiKeyPublic, Depends(requires("label"))]
Auditor = Annotated[ApiKeyPublic, Depends(requires("read_audit"))]
Admin = Annotated[ApiKeyPublic, Depends(requires("manage_models"))]
