"""The ASGI gate in front of every route: body size and API key checked before any body is read.

FastAPI parses a request's form before its dependencies run, so a key checked in a dependency
comes after a 500 MB upload has been received and spooled. This plain ASGI middleware answers
from the headers alone: 413 when ``Content-Length`` is over the route's limit, 401/403 when the
key is missing or invalid (invalid-key traffic is itself rate-limited per client address and
audited), and it counts streamed bytes so a body without ``Content-Length`` stops at the limit.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from radvigil.errors import AuthError, StoreError
from radvigil.service.errors import ApiError

log = logging.getLogger(__name__)
OPEN_PATHS = ("/health", "/dashboard", "/docs", "/redoc", "/openapi.json")
SMALL_BODY = 1024 * 1024  # JSON and form bodies of routes that take no files
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file bytes


def body_limit(path: str, settings: Any) -> int:
    """The most bytes a request body to ``path`` may carry."""
    if path in ("/v1/predict/batch", "/dicom-web/studies"):
        return settings.max_request_bytes
    if path in ("/v1/predict", "/v1/predict/explain"):
        return settings.max_upload_bytes + _MULTIPART_SLACK
    return SMALL_BODY


def token_from(headers: dict[bytes, bytes]) -> str | None:
    if token := headers.get(b"x-api-key"):
        return token.decode("latin-1").strip() or None
    scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class RequestGuard:
    """Size limits for every request; an API key for every route outside :data:`OPEN_PATHS`."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = dict(scope["headers"])
        limit = body_limit(path, self.state.settings)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _reply(send, 413, "request_too_large", f"request body over {limit:,} bytes")
            return
        if not path.startswith(OPEN_PATHS):
            refusal = await self._check_key(scope, headers)
            if refusal is not None:
                await _reply(send, *refusal)
                return
        await self.app(scope, _counting(receive, limit), send)

    async def _check_key(
        self, scope: Scope, headers: dict[bytes, bytes]
    ) -> tuple[int, str, str, dict[str, str] | None] | None:
        """None when the key is valid; else the (status, code, message, headers) to answer."""
        token = token_from(headers)
        address = (scope.get("client") or ("unknown", 0))[0]
        try:
            await anyio.to_thread.run_sync(self.state.auth.authenticate, token)
            return None
        except AuthError as exc:
            message = exc.message
        except StoreError as exc:
            return 503, exc.code, exc.message, None
        try:
            self.state.limiter.take_address(address, self.state.settings.invalid_key_rate_limit)
        except ApiError as exc:
            return exc.status, exc.code, exc.message, exc.headers
        if token:  # a presented but invalid key: a failed sign-in, audited (never the token)
            await anyio.to_thread.run_sync(
                self.state.audit_security,
                "auth.failed",
                f"client:{address}",
                {
                    "path": scope["path"],
                    "key_prefix": token.split("_")[1][:12] if token.count("_") >= 2 else None,
                },
            )
        return 401, "unauthenticated", message, None


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops a body (chunked or lying about its length) at ``limit`` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body over {limit:,} bytes")
        return message

    return wrapped


async def _reply(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
