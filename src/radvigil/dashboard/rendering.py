"""Rendering: the Jinja2 environment, the page route class, security headers and error pages.

:class:`PageRoute` wraps every dashboard handler: a missing session becomes a redirect to the
sign-in form, a domain error becomes an HTML error page with the API's status code, and every
response gets a Content-Security-Policy that lets the page load nothing from another origin.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from radvigil import __version__
from radvigil.dashboard.session import PREFIX, SignInRequired, Viewer
from radvigil.errors import RadvigilError
from radvigil.model.card import REVIEW_WARNING
from radvigil.service.errors import status_of

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# (path, label, action the page needs)
PAGES = (
    ("", "Overview", "read_predictions"),
    ("/drift", "Drift", "read_predictions"),
    ("/performance", "Performance", "read_predictions"),
    ("/review", "Review", "label"),
    ("/models", "Models", "read_predictions"),
    ("/pacs", "PACS", "read_predictions"),
    ("/audit", "Audit", "read_audit"),
)


def _when(value: datetime | str | None) -> str:
    """A time as the dashboard shows it: UTC, to the second."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        when = value
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


templates.env.filters.update(when=_when, pct=_pct, num=_num)
templates.env.globals.update(
    prefix=PREFIX, warning=REVIEW_WARNING, version=__version__, static=f"{PREFIX}/static"
)


def render(
    request: Request,
    name: str,
    viewer: Viewer | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page with the navigation the viewer's role allows."""
    path = request.url.path.removeprefix(PREFIX).rstrip("/")
    nav = []
    if viewer is not None:
        for href, label, action in PAGES:
            if viewer.can(action):
                active = path == href or (href and path.startswith(href + "/"))
                nav.append({"href": PREFIX + (href or "/"), "label": label, "active": active})
    return templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "nav": nav, **context},
        status_code=status,
    )


def error_page(request: Request, viewer: Viewer | None, status: int, message: str) -> Response:
    titles = {401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 429: "Slow down"}
    return render(
        request,
        "error.html",
        viewer,
        status=status,
        title=titles.get(status, "Something went wrong"),
        message=message,
    )


class PageRoute(APIRoute):
    """An APIRoute whose errors are pages and whose responses carry the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = RedirectResponse(f"{PREFIX}/login", status_code=303)
            except RadvigilError as exc:
                viewer = getattr(request.state, "viewer", None)
                headers = getattr(exc, "headers", None) or {}
                response = error_page(request, viewer, status_of(exc), exc.message)
                response.headers.update(headers)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
                viewer = getattr(request.state, "viewer", None)
                response = error_page(request, viewer, 422, str(first.get("msg")))
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return page
