"""Drift monitoring: stored monitor results, alerts and their life cycle, runs and reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from radvigil.monitoring import WindowReport
from radvigil.service.deps import MAX_DB_INT, Admin, Reader, State, requires
from radvigil.service.paging import AFTER, next_page
from radvigil.service.schemas import ResolveIn
from radvigil.store import AlertPublic, ApiKeyPublic, MonitorResultPublic

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"])
AlertManager = Annotated[ApiKeyPublic, Depends(requires("manage_alerts"))]
AlertId = Path(..., ge=1, le=MAX_DB_INT, description="Alert id")


class MonitorResultOut(BaseModel):
    """One detector on one window; ``report_url`` serves the window's Evidently report."""

    id: int
    created_at: datetime
    model_name: str
    model_version: str
    window_kind: str
    window_start: datetime
    window_end: datetime
    n: int
    group: str
    detector: str
    statistic: float | None
    p_value: float | None
    threshold: float | None
    threshold_source: str | None
    drift: bool
    effect_size: float | None
    vetoed: str | None
    skipped: str | None
    details: dict
    report_url: str

    @classmethod
    def of(cls, row: MonitorResultPublic) -> MonitorResultOut:
        values = row.model_dump(exclude={"report_path"})
        return cls(**values, report_url=f"/v1/monitoring/reports/{row.id}")


class RunOut(BaseModel):
    """What a monitoring run evaluated and changed."""

    model_name: str
    model_version: str
    windows: list[WindowReport]
    opened: list[AlertPublic]
    resolved: list[AlertPublic]


@router.get(
    "/results",
    response_model=list[MonitorResultOut],
    summary="Stored monitor results, newest window first",
)
def list_results(
    state: State,
    response: Response,
    _: Reader,
    detector: str | None = Query(None, max_length=64),
    group: str | None = Query(None, max_length=200, description="'all' or e.g. 'site=ward-3'"),
    model_version: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=5000),
    after: int | None = Query(None, ge=1, le=MAX_DB_INT, description=AFTER),
) -> list[MonitorResultOut]:
    rows = state.monitoring.stores.results.list(
        model_name=state.settings.model_name,
        model_version=model_version,
        detector=detector,
        group=group,
        limit=limit,
        after=after,
    )
    next_page(response, rows, limit)
    return [MonitorResultOut.of(row) for row in rows]


@router.get("/alerts", response_model=list[AlertPublic], summary="Alerts, newest first")
def list_alerts(
    state: State,
    response: Response,
    _: Reader,
    alert_state: Literal["open", "acknowledged", "resolved"] | None = Query(None, alias="state"),
    limit: int = Query(100, ge=1, le=5000),
    after: int | None = Query(None, ge=1, le=MAX_DB_INT, description=AFTER),
) -> list[AlertPublic]:
    alerts = state.monitoring.stores.alerts.list(
        state=alert_state, model_name=state.settings.model_name, limit=limit, after=after
    )
    next_page(response, alerts, limit)
    return alerts


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertPublic,
    summary="Acknowledge an open alert (clinician or admin; audited)",
)
def acknowledge(state: State, key: AlertManager, alert_id: int = AlertId) -> AlertPublic:
    return state.monitoring.acknowledge(alert_id, key.name)


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertPublic,
    summary="Resolve an open or acknowledged alert, saying why (admin; audited)",
)
def resolve(state: State, key: Admin, body: ResolveIn, alert_id: int = AlertId) -> AlertPublic:
    return state.monitoring.resolve(alert_id, key.name, body.reason)


@router.post(
    "/run",
    response_model=RunOut,
    summary="Evaluate the champion's new complete windows now, in a child process (admin)",
)
async def run_now(state: State, _: Admin) -> RunOut:
    run = await state.monitoring.run_now()
    return RunOut(
        model_name=run.model_name,
        model_version=run.model_version,
        windows=run.windows,
        opened=run.opened,
        resolved=run.resolved,
    )


@router.get(
    "/reports/{result_id}",
    response_class=FileResponse,
    responses={200: {"content": {"text/html": {}}}},
    summary="The Evidently data-drift report (HTML) of a monitor result's window",
)
async def report(
    state: State,
    _: Reader,
    result_id: int = Path(..., ge=1, le=MAX_DB_INT, description="Monitor result id"),
) -> FileResponse:
    path = await state.run_heavy(state.monitoring.report_path, result_id)
    return FileResponse(path, media_type="text/html", filename=path.name)
