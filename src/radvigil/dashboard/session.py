"""Dashboard sessions: a server-side session id in a cookie, the viewer, and CSRF checks.

The cookie holds a random session id (HttpOnly, SameSite=Strict, Path=/dashboard; Secure in
production or by ``RADVIGIL_COOKIE_SECURE``, else over HTTPS), never the API key. The database
holds the id's hash and whom it signs in (:class:`~radvigil.store.sessions.SessionStore`), so
every replica knows the session and a restart keeps it; it ends at sign-out, after
``RADVIGIL_SESSION_IDLE_MINUTES`` idle, after eight hours, or when its API key is revoked.
People who sign in through OpenID Connect (:mod:`radvigil.dashboard.oidc`) get the same kind
of session, with the role their groups map to. Forms of a signed-in viewer carry a token
derived from the session id (an HMAC no one without the cookie can compute); the sign-in
form, before there is a session, uses a double-submit cookie. Every POST must also come from
this origin when the browser says where it came from.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from radvigil.errors import AuthError, ForbiddenError
from radvigil.service.deps import State
from radvigil.store import ApiKeyPublic, allowed
from radvigil.store.sessions import SESSION_MAX_SECONDS

PREFIX = "/dashboard"
SESSION_COOKIE = "radvigil_session"
LOGIN_COOKIE = "radvigil_login_csrf"
SESSION_SECONDS = SESSION_MAX_SECONDS
_CSRF_CONTEXT = b"radvigil-dashboard-csrf-v1"


class SignInRequired(AuthError):
    """No valid session: the page redirects to the sign-in form instead of answering 401."""


@dataclass(frozen=True)
class Viewer:
    """Who is signed in (an API key, or a person's key-shaped principal) and what they may do."""

    key: ApiKeyPublic
    csrf: str
    kind: Literal["api_key", "oidc"] = "api_key"

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def role(self) -> str:
        return self.key.role

    def can(self, action: str) -> bool:
        return allowed(self.key.role, action)

    def require(self, action: str) -> None:
        if not self.can(action):
            raise ForbiddenError(f"role {self.role!r} may not {action.replace('_', ' ')}")


def csrf_for(session_id: str) -> str:
    """The CSRF token of a session: an HMAC keyed by the session id."""
    return hmac.new(session_id.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    app = request.scope.get("app")
    decided = app.state.radvigil.settings.secure_cookies if app is not None else None
    return decided if decided is not None else request.url.scheme == "https"


def set_cookie(
    request: Request,
    response: Response,
    name: str,
    value: str,
    age: int,
    samesite: Literal["strict", "lax"] = "strict",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PREFIX,
        httponly=True,
        samesite=samesite,
        secure=_secure(request),
    )


def clear_cookie(
    request: Request,
    response: Response,
    name: str,
    samesite: Literal["strict", "lax"] = "strict",
) -> None:
    response.delete_cookie(
        name, path=PREFIX, httponly=True, samesite=samesite, secure=_secure(request)
    )


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def check_origin(request: Request) -> None:
    """Refuse a POST whose Origin (or Referer) names another site."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return
    parts = urlsplit(source)
    if f"{parts.scheme}://{parts.netloc}" != f"{request.url.scheme}://{request.url.netloc}":
        raise ForbiddenError("this form was posted from another site")


def check_csrf(expected: str | None, sent: str | None) -> None:
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise ForbiddenError("the form's security token is missing or stale; reload the page")


def viewer_from(request: Request, state: State) -> Viewer | None:
    """The signed-in viewer, or None when there is no live session for the cookie."""
    session_id = request.cookies.get(SESSION_COOKIE)
    session = state.sessions.get(session_id)
    if session is None or not session_id:
        return None
    return Viewer(session.caller, csrf_for(session_id), session.kind)


def signed_in(request: Request, state: State) -> Viewer:
    """A dependency: the viewer, charged against the key's rate limit; else sign in."""
    viewer = viewer_from(request, state)
    if viewer is None:
        raise SignInRequired("sign in to use the dashboard")
    request.state.viewer = viewer  # for error pages raised later in the request
    state.limiter.take(viewer.key)
    return viewer


SignedIn = Annotated[Viewer, Depends(signed_in)]


async def posted_form(request: Request, viewer: SignedIn) -> dict[str, str]:
    """A dependency for POST handlers: the form's fields, after origin and CSRF checks."""
    check_origin(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    check_csrf(viewer.csrf, fields.get("csrf"))
    return fields


Form = Annotated[dict[str, str], Depends(posted_form)]
