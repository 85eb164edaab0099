"""The audit log, read-only: filtered events and the verification of its hash chain."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from radvigil.service.deps import MAX_DB_INT, Auditor, State
from radvigil.service.paging import AFTER, next_page
from radvigil.store import AuditEvent, VerifyResult

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "",
    response_model=list[AuditEvent],
    summary="Audit events, newest first, paginated by key (X-Next-After)",
)
def list_audit(
    state: State,
    _: Auditor,
    response: Response,
    action: str | None = Query(None, max_length=64),
    actor: str | None = Query(None, max_length=100),
    object_type: str | None = Query(None, max_length=64),
    object_id: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=5000),
    after: int | None = Query(None, ge=1, le=MAX_DB_INT, description=AFTER),
) -> list[AuditEvent]:
    events = state.audit.list(
        limit=limit,
        action=action,
        actor=actor,
        object_type=object_type,
        object_id=object_id,
        after=after,
    )
    next_page(response, events, limit)
    return events


@router.get(
    "/verify",
    response_model=VerifyResult,
    summary="Walk the hash chain: ok, or the first record that was edited or deleted",
    description="Checks the records after the signed checkpoint of the last verification "
    "(``from_id``), up to the signed head, so removed records at the end show. The full walk "
    "from record 1 is `radvigil audit verify --full`.",
)
async def verify_audit(state: State, _: Auditor) -> VerifyResult:
    return await state.run_heavy(state.audit.verify, full=False)
