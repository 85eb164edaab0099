"""Drift: detector timelines with thresholds and alerts, the embedding map, image statistics.

The embedding map plots the first two principal axes of the champion's reference profile: the
profile's reduced embeddings *are* PCA coordinates of the reference, and every stored
prediction's ``embedding`` was reduced with the same projection, so both sides share the axes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError

from radvigil.dashboard import charts
from radvigil.dashboard.monitors import monitor_view
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import PREFIX, Form, SignedIn
from radvigil.errors import InputError
from radvigil.service.deps import MAX_DB_INT, State
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import ResolveIn
from radvigil.service.state import ServiceState
from radvigil.store import AlertPublic
from radvigil.store.predictions import PredictionPoint

router = APIRouter(route_class=PageRoute)
STATS = (
    ("mean", "mean grey level"),
    ("std", "contrast (grey-level std)"),
    ("sharpness", "sharpness"),
)
CURRENT_LIMIT = 500
REPORT_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'unsafe-inline' 'unsafe-eval'",
        "style-src 'unsafe-inline'",
        "img-src data: blob:",
        "font-src data:",
        "sandbox allow-scripts",
    )
)


def recent(state: ServiceState, version: str, limit: int = CURRENT_LIMIT) -> list[PredictionPoint]:
    """The newest answered predictions of one model version (shadow scoring excluded), only
    the columns the map and histograms plot."""
    return state.predictions.points(model_version=version, limit=limit)


def embedding_map(served: ServedModel, rows: list[PredictionPoint]) -> dict[str, Any] | None:
    """Reference vs current points on the profile's first two principal axes."""
    profile = served.profile
    reference = getattr(getattr(profile, "reference", None), "embeddings", None)
    if reference is None or reference.shape[1] < 2:
        return None
    current = [
        (r.embedding[:2], r.routed_to_review) for r in rows if r.embedding and len(r.embedding) >= 2
    ]
    usual = np.array([e for e, routed in current if not routed]).reshape(-1, 2)
    drifters = np.array([e for e, routed in current if routed]).reshape(-1, 2)
    ratio = getattr(getattr(profile, "projection", None), "explained_variance_ratio", None)
    axis = ["PC1", "PC2"]
    if ratio is not None and len(ratio) >= 2:
        axis = [f"PC{i + 1} ({100 * float(ratio[i]):.0f} % of reference variance)" for i in (0, 1)]
    datasets = [
        charts.points("reference (validation)", reference, charts.GREY, radius=2),
        charts.points("current", usual, charts.BLUE),
        charts.points("current, drifters", drifters, charts.RED, radius=4),
    ]
    datasets[2]["pointStyle"] = "triangle"
    return charts.scatter(datasets, x_title=axis[0], y_title=axis[1])


def stat_histograms(served: ServedModel, rows: list[PredictionPoint]) -> list[dict[str, Any]]:
    """Reference vs current histogram of each image statistic both sides have."""
    stats = getattr(getattr(served.profile, "reference", None), "stats", None)
    found = []
    for column, title in STATS:
        ref = stats[column].tolist() if stats is not None and column in stats else []
        values = [r.image_stats.get(column) for r in rows]
        cur = [float(v) for v in values if isinstance(v, int | float)]
        config = charts.histogram_pair(ref, cur, title=title)
        if config is not None:
            found.append({"id": f"hist-{column}", "title": title, "config": config})
    return found


@router.get("/drift")
def drift_page(
    request: Request,
    state: State,
    viewer: SignedIn,
    detector: str | None = Query(None, max_length=64),
    group: str | None = Query(None, max_length=200),
) -> Response:
    viewer.require("read_predictions")
    champion = state.models.champion
    rows = recent(state, champion.version) if champion else []
    return render(
        request,
        "drift.html",
        viewer,
        champion=champion,
        has_profile=champion is not None and champion.profile is not None,
        monitor=monitor_view(state, detector=detector, group=group),
        embedding_chart=embedding_map(champion, rows) if champion and champion.profile else None,
        histograms=stat_histograms(champion, rows) if champion and champion.profile else [],
        n_current=len(rows),
        n_drifters=sum(r.routed_to_review for r in rows),
    )


@router.get("/drift/reports/{result_id}")
async def evidently_report(
    state: State, viewer: SignedIn, result_id: int = Path(..., ge=1, le=MAX_DB_INT)
) -> Response:
    """The window's Evidently HTML, shown inline in a sandbox: its own inline scripts run,
    nothing is fetched from anywhere, and it cannot reach the dashboard's origin."""
    viewer.require("read_predictions")
    path = await state.run_heavy(state.monitoring.report_path, result_id)
    return FileResponse(
        path,
        media_type="text/html",
        headers={"Content-Disposition": "inline", "Content-Security-Policy": REPORT_CSP},
    )


@router.post("/drift/alerts/{alert_id}/acknowledge")
def acknowledge_alert(
    state: State, viewer: SignedIn, _: Form, alert_id: int = Path(..., ge=1, le=MAX_DB_INT)
) -> Response:
    viewer.require("manage_alerts")
    alert = state.monitoring.acknowledge(alert_id, viewer.name)
    return _back_to(alert)


@router.post("/drift/alerts/{alert_id}/resolve")
def resolve_alert(
    state: State, viewer: SignedIn, form: Form, alert_id: int = Path(..., ge=1, le=MAX_DB_INT)
) -> Response:
    viewer.require("manage_models")
    try:
        body = ResolveIn(reason=form.get("reason", "").strip())
    except ValidationError as exc:
        raise InputError(f"reason: {exc.errors()[0]['msg']}") from exc
    alert = state.monitoring.resolve(alert_id, viewer.name, body.reason)
    return _back_to(alert)


def _back_to(alert: AlertPublic) -> Response:
    query = urlencode({"detector": alert.detector, "group": alert.group})
    return RedirectResponse(f"{PREFIX}/drift?{query}#timeline", status_code=303)
