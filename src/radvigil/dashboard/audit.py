"""Audit: the filterable audit log (pages by key: ``after`` the last id shown), its CSV
export, and the hash-chain verification from the signed checkpoint."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, TypedDict
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response

from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import SignedIn
from radvigil.service.deps import MAX_DB_INT, State
from radvigil.store import AuditEvent
from radvigil.store.audit import HASHED_FIELDS, canonical_json

router = APIRouter(route_class=PageRoute)
KNOWN_ACTIONS = (
    "predict",
    "label",
    "rollout_shadow",
    "rollout_canary",
    "promote",
    "reject",
    "rollback",
    "dashboard_sign_in",
    "dashboard_sign_out",
    "audit_export",
    "pacs_retry",
)
CSV_COLUMNS = (*HASHED_FIELDS, "hash")


class AuditFilters(TypedDict):
    """The audit log's filters (None means any)."""

    action: str | None
    actor: str | None
    object_type: str | None
    object_id: str | None


def _filters(
    action: str | None = Query(None, max_length=200),
    actor: str | None = Query(None, max_length=200),
    object_type: str | None = Query(None, max_length=200),
    object_id: str | None = Query(None, max_length=200),
) -> AuditFilters:
    """The audit filters both the page and the CSV export take (empty means any)."""
    return {
        "action": action or None,
        "actor": actor or None,
        "object_type": object_type or None,
        "object_id": object_id or None,
    }


Filters = Annotated[AuditFilters, Depends(_filters)]


@router.get("/audit")
def audit_page(
    request: Request,
    state: State,
    viewer: SignedIn,
    filters: Filters,
    limit: int = Query(100, ge=1, le=5000),
    after: int | None = Query(None, ge=1, le=MAX_DB_INT),
) -> Response:
    viewer.require("read_audit")
    events = state.audit.list(limit=limit, after=after, **filters)
    following = {k: v for k, v in {**filters, "limit": str(limit)}.items() if v}
    next_after = events[-1].id if len(events) == limit else None
    return render(
        request,
        "audit.html",
        viewer,
        events=events,
        filters=filters,
        limit=limit,
        after=after,
        first_query=urlencode(following),
        next_query=urlencode({**following, "after": next_after}) if next_after else None,
        verified=state.audit.verify(full=False),  # from the signed checkpoint, not record 1
        known_actions=KNOWN_ACTIONS,
        query=str(request.url.query),
    )


def to_csv(events: list[AuditEvent]) -> str:
    """The events as CSV, one row each, ``details`` as canonical JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        row = event.model_dump()
        row["created_at"] = event.created_at.astimezone(UTC).isoformat()
        row["details"] = canonical_json(event.details)
        writer.writerow(_safe(row[c]) for c in CSV_COLUMNS)
    return buffer.getvalue()


def _safe(value: object) -> object:
    """Keep a spreadsheet from reading a cell as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


@router.get("/audit.csv")
def audit_csv(
    state: State,
    viewer: SignedIn,
    filters: Filters,
    limit: int = Query(10_000, ge=1, le=100_000),
) -> Response:
    viewer.require("read_audit")
    events = state.audit.list(limit=limit, **filters)
    state.audit.append(
        actor=viewer.name,
        action="audit_export",
        object_type="audit_log",
        details={"rows": len(events), "filters": {k: v for k, v in filters.items() if v}},
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        to_csv(events),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="radvigil-audit-{stamp}.csv"'},
    )
