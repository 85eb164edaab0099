"""Liveness (no auth) and readiness (model loaded, database reachable)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from radvigil.errors import StoreError
from radvigil.service.deps import MetricsReader, State

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers (no API key needed)")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: a champion is loaded and the database answers")
def ready(state: State, _: MetricsReader) -> JSONResponse:
    champion = state.models.champion
    try:
        state.db.check()
        database = "ok"
    except StoreError as exc:
        database = exc.message
    body = {
        "model": f"{champion.name}/{champion.version}" if champion else None,
        "database": database,
        "spooled_predictions": state.writer.spool.count(),
        "last_model_error": state.models.last_error,
        "model_load_failures": state.models.load_failures,
        "fallback": state.models.fallback,
    }
    ok = champion is not None and database == "ok"
    return JSONResponse({"ready": ok, **body}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: State, _: MetricsReader) -> Response:
    m = state.metrics
    m.queue_depth.set(state.batcher.depth)
    m.writer_spooled.set(state.writer.spool.count())
    m.load_failures.set(state.models.load_failures)
    state.monitoring.refresh_champion_metrics()  # the worker's results, from the database
    m.model_info.clear()
    for served in (state.models.champion, state.models.challenger):
        if served is not None:
            m.model_info.labels(served.name, served.version, served.alias).set(1)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
