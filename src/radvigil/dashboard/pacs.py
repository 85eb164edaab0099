"""PACS: configured connections (no secrets), the outbox with "retry now", per-AE traffic.

The connections are this service's settings, the ones ``radvigil dicom listen`` and ``dicom pull``
read from the same environment. Viewing needs ``read_predictions``; putting dead-lettered results
back in the queue needs ``manage_pacs`` (admins) and writes an audit record, as
``radvigil dicom retry`` does. Everything shown is AE titles, counts, hashed or derived UIDs and
errors the outbox wrote: no patient data.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from radvigil.config import Settings
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import PREFIX, Form, SignedIn
from radvigil.errors import InputError
from radvigil.loop.pacs import retry_dead_letters
from radvigil.service.deps import State
from radvigil.store.pacs import OutboxState, PacsStore
from radvigil.store.pacs_pull import PullStore
from radvigil.store.pacs_traffic import ae_traffic

router = APIRouter(route_class=PageRoute)
STATES: tuple[OutboxState, ...] = ("pending", "dead", "delivered")
MAX_IDS = 500


def without_userinfo(url: str | None) -> str | None:
    """A URL as shown to people: any ``user:password@`` dropped."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def connections(settings: Settings, store: PullStore) -> dict[str, Any]:
    """The receiver, the pull sources (with their checkpoints) and the result destination."""
    checkpoints = {c.source: c for c in store.checkpoints()}
    if settings.pacs_send == "cstore":
        destination = (
            f"C-STORE to {settings.pacs_ae_title}@{settings.pacs_host}:{settings.pacs_port}"
        )
    elif settings.pacs_send == "stowrs":
        destination = f"STOW-RS to {without_userinfo(settings.pacs_stow_url) or '(no URL set)'}"
    else:
        destination = "none: results are predicted, nothing is sent back"
    return {
        "receiver": {
            "ae_title": settings.dicom_ae_title,
            "address": f"{settings.dicom_host}:{settings.dicom_port}",
            "allowed": settings.dicom_allowed_aes,
            "sites": settings.dicom_sites,
            "quiet_s": settings.dicom_quiet_seconds,
        },
        "sources": [
            {
                "name": s.name,
                "url": without_userinfo(s.url),
                "auth": "basic" if s.username else "none",
                "site": s.site or s.name,
                "modalities": ", ".join(s.modalities),
                "checkpoint": checkpoints.get(s.name),
            }
            for s in settings.dicom_pull_sources
        ],
        "destination": destination,
        "destination_auth": settings.pacs_send == "stowrs" and bool(settings.pacs_username),
    }


@router.get("/pacs")
def pacs_page(
    request: Request,
    state: State,
    viewer: SignedIn,
    show: OutboxState | None = Query(None),
    limit: int = Query(50, ge=1, le=1000),
    retried: int | None = Query(None, ge=0),
) -> Response:
    viewer.require("read_predictions")
    store = PacsStore(state.db)
    return render(
        request,
        "pacs.html",
        viewer,
        connections=connections(state.settings, PullStore(state.db)),
        counts=store.counts(),
        rows=store.entries(show, limit),
        show=show,
        states=STATES,
        limit=limit,
        traffic=ae_traffic(state.db),
        can_retry=viewer.can("manage_pacs"),
        retried=retried,
    )


def _ids(form: dict[str, str]) -> list[int]:
    """The outbox ids a retry form names (``ids``: comma-separated; "all" or empty: every one)."""
    text = form.get("ids", "").strip()
    if text in ("", "all"):
        return []
    try:
        ids = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise InputError("ids must be outbox ids separated by commas, or all") from exc
    if not ids or len(ids) > MAX_IDS or min(ids) < 1:
        raise InputError(f"name 1 to {MAX_IDS} positive outbox ids, or all")
    return ids


@router.post("/pacs/retry")
def retry_action(state: State, viewer: SignedIn, form: Form) -> Response:
    """Put dead-lettered results (all, or the posted ids) back in the queue, audited."""
    viewer.require("manage_pacs")
    count = retry_dead_letters(PacsStore(state.db), state.audit, viewer.name, _ids(form))
    return RedirectResponse(f"{PREFIX}/pacs?retried={count}&show=pending", status_code=303)
