"""The dashboard's router (every page under ``/dashboard``), sign-in and sign-out.

:func:`mount` includes :data:`router` in a service app and serves :data:`STATIC_DIR` at
``/dashboard/static``; entry points pass it to ``create_app(mounts=...)``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from radvigil.dashboard import (
    audit,
    drift,
    models,
    notes,
    oidc,
    overview,
    pacs,
    performance,
    review,
)
from radvigil.dashboard.rendering import STATIC_DIR, PageRoute, render
from radvigil.dashboard.session import (
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Form,
    SignedIn,
    check_csrf,
    check_origin,
    clear_cookie,
    new_login_token,
    set_cookie,
    viewer_from,
)
from radvigil.errors import AuthError
from radvigil.service.deps import State

__all__ = ["STATIC_DIR", "mount", "router"]

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)


def _sign_in_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    token = new_login_token()
    response = render(
        request,
        "login.html",
        None,
        status=status,
        login_csrf=token,
        error=error,
        oidc=request.app.state.radvigil.oidc is not None,
    )
    set_cookie(request, response, LOGIN_COOKIE, token, 3600)
    return response


@router.get("/login")
def login_page(request: Request, state: State) -> Response:
    if viewer_from(request, state) is not None:
        return RedirectResponse(f"{PREFIX}/", status_code=303)
    return _sign_in_page(request)


async def login_form(request: Request) -> str:
    """A dependency: the API key posted by the sign-in form, after origin and CSRF checks."""
    check_origin(request)
    form = await request.form()
    check_csrf(request.cookies.get(LOGIN_COOKIE), str(form.get("csrf") or ""))
    return str(form.get("api_key") or "").strip()


@router.post("/login")
def login(request: Request, state: State, token: Annotated[str, Depends(login_form)]) -> Response:
    address = request.client.host if request.client else "unknown"
    # Every attempt is charged to the address first, so guessing keys is limited before a
    # failure writes its audit record.
    state.limiter.take_address(address, state.settings.invalid_key_rate_limit)
    try:
        key = state.auth.authenticate(token)
    except AuthError as exc:
        state.audit_security("dashboard_sign_in_failed", f"client:{address}", {})
        return _sign_in_page(request, error=exc.message, status=401)
    state.audit.append(
        actor=key.name, action="dashboard_sign_in", object_type="api_key", object_id=key.name
    )
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    session_id = state.sessions.create_for_key(key)
    set_cookie(request, response, SESSION_COOKIE, session_id, SESSION_SECONDS)
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, state: State, viewer: SignedIn, _: Form) -> Response:
    state.audit.append(
        actor=viewer.name,
        action="dashboard_sign_out",
        object_type="person" if viewer.kind == "oidc" else "api_key",
        object_id=viewer.name,
    )
    state.sessions.delete(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.get("")
def root() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


for module in (overview, drift, performance, review, notes, models, pacs, audit, oidc):
    router.include_router(module.router)


def mount(app: FastAPI) -> None:
    """Serve the dashboard from a service app: its pages and its static files."""
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
