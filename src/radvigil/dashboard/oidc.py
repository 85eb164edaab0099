"""OpenID Connect sign-in pages: start at the identity provider, come back to the callback.

``GET /dashboard/oidc/login`` remembers a new state, nonce and PKCE verifier in the database
(any replica may receive the callback), binds the state to this browser with a short cookie,
and sends the browser to the provider. ``GET /dashboard/oidc/callback`` takes that state back
once, checks the cookie, lets :class:`~radvigil.service.oidc.OidcClient` exchange the code and
validate the ID token, and signs the person in with the role their groups map to. Every
sign-in, refusal and failure is audited.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import (
    PREFIX,
    SESSION_COOKIE,
    SESSION_SECONDS,
    clear_cookie,
    set_cookie,
)
from radvigil.errors import AuthError, NotFoundError
from radvigil.service.deps import State
from radvigil.service.oidc import NoRoleError, OidcClient
from radvigil.store.sessions import LOGIN_SECONDS

STATE_COOKIE = "radvigil_oidc_state"

router = APIRouter(prefix="/oidc", route_class=PageRoute)


def _client(state: State) -> OidcClient:
    if state.oidc is None:
        raise NotFoundError("OpenID Connect sign-in is not configured (RADVIGIL_OIDC_ISSUER)")
    return state.oidc


def _refused(request: Request, title: str, message: str, status: int) -> Response:
    response = render(
        request,
        "error.html",
        None,
        status=status,
        title=title,
        message=message,
        back=(f"{PREFIX}/login", "Back to sign-in"),
    )
    clear_cookie(request, response, STATE_COOKIE, samesite="lax")
    return response


@router.get("/login")
def oidc_login(request: Request, state: State) -> Response:
    """Send the browser to the identity provider with a fresh state, nonce and PKCE challenge.

    Each start writes a row before anyone is signed in, so it is charged to the client's
    address like a failed sign-in (``RADVIGIL_INVALID_KEY_RATE_LIMIT`` per minute).
    """
    client = _client(state)
    address = request.client.host if request.client else "unknown"
    state.limiter.take_address(address, state.settings.invalid_key_rate_limit)
    authorization = client.authorization()
    state.sessions.begin_login(
        authorization.state, authorization.nonce, authorization.code_verifier
    )
    response = RedirectResponse(authorization.url, status_code=303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation.
    set_cookie(request, response, STATE_COOKIE, authorization.state, LOGIN_SECONDS, samesite="lax")
    return response


@router.get("/callback")
def oidc_callback(request: Request, state: State) -> Response:
    """Finish the sign-in the provider sent back; a session, or a page saying why not."""
    client = _client(state)
    address = request.client.host if request.client else "unknown"
    params = request.query_params
    returned = params.get("state") or ""
    pending = state.sessions.take_login(returned)
    bound = request.cookies.get(STATE_COOKIE) or ""
    try:
        if params.get("error"):
            raise AuthError(f"the identity provider ended the sign-in: {params['error'][:80]}")
        if params.get("iss") and params["iss"].rstrip("/") != client.issuer:  # RFC 9207
            raise AuthError("the sign-in came back from another identity provider")
        if pending is None or not hmac.compare_digest(bound, returned):
            raise AuthError("this sign-in was not started here or has expired; start again")
        identity = client.finish(params.get("code") or "", pending.nonce, pending.code_verifier)
    except NoRoleError as exc:
        details = {"method": "oidc", "person": f"oidc:{exc.name}"}
        state.audit_security("dashboard_sign_in_refused", f"client:{address}", details)
        return _refused(request, "No radvigil role", exc.message, 403)
    except AuthError as exc:
        state.limiter.take_address(address, state.settings.invalid_key_rate_limit)
        state.audit_security("dashboard_sign_in_failed", f"client:{address}", {"method": "oidc"})
        return _refused(request, "Sign-in failed", exc.message, 401)
    session_id = state.sessions.create_for_person(identity.name, identity.role)
    name = f"oidc:{identity.name}"
    state.audit.append(
        actor=name,
        action="dashboard_sign_in",
        object_type="person",
        object_id=name,
        details={"method": "oidc", "role": identity.role, "group": identity.group},
    )
    # A page, not a redirect: the browser then navigates from this site, so it sends the
    # SameSite=Strict session cookie with the next request.
    response = render(request, "signed_in.html", None, target=f"{PREFIX}/")
    set_cookie(request, response, SESSION_COOKIE, session_id, SESSION_SECONDS)
    clear_cookie(request, response, STATE_COOKIE, samesite="lax")
    return response
