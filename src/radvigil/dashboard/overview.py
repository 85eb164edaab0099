"""Overview: what is served, traffic and latency, open alerts, and the review backlog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from radvigil.dashboard import charts
from radvigil.dashboard.lineage import alias_history, served_summary
from radvigil.dashboard.monitors import open_alerts
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import SignedIn
from radvigil.service.deps import State
from radvigil.service.state import ServiceState
from radvigil.service.traffic import TrafficOut, traffic
from radvigil.store import ReviewQueue
from radvigil.store.review import COUNT_CAP

router = APIRouter(route_class=PageRoute)


def traffic_chart(out: TrafficOut) -> dict[str, Any]:
    """Requests per bucket (bars, right axis) and latency p50/p95 (lines, left axis)."""
    labels = [charts.time_label(b.start, out.bucket_seconds) for b in out.buckets]
    return charts.line(
        labels,
        [
            charts.series("latency p50 (ms)", [b.latency_p50_ms for b in out.buckets], charts.BLUE),
            charts.series(
                "latency p95 (ms)", [b.latency_p95_ms for b in out.buckets], charts.ORANGE
            ),
            charts.series(
                "predictions", [b.count for b in out.buckets], charts.GREY, axis="y2", kind="bar"
            ),
        ],
        y_title="latency (ms)",
        y_range=(0, None),
        y2_title="predictions per bucket",
    )


def _counts(state: ServiceState, since: datetime) -> dict[str, int]:
    threshold = state.settings.review_confidence
    return {
        "drifters": state.predictions.count(since=since, routed_to_review=True),
        "labels": state.feedback.count(since=since),
        "queue": ReviewQueue(state.db).size(max_confidence=threshold, cap=COUNT_CAP),
    }


@router.get("/")
def overview(request: Request, state: State, viewer: SignedIn) -> Response:
    viewer.require("read_predictions")
    now = datetime.now(UTC)
    out = traffic(state.predictions, hours=24, now=now)
    history, registry_error = alias_history(state)
    served = [
        served_summary(m, history)
        for m in (state.models.champion, state.models.challenger)
        if m is not None
    ]
    return render(
        request,
        "overview.html",
        viewer,
        served=served,
        rollout=state.models.rollout,
        registry_error=registry_error,
        traffic=out,
        traffic_chart=traffic_chart(out) if out.total else None,
        counts=_counts(state, now - timedelta(hours=24)),
        alerts=open_alerts(state, limit=10),
        now=now,
    )
