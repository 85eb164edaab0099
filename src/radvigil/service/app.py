"""The FastAPI app factory: ``create_app()`` builds a service from settings (or injected parts).

The service knows nothing of the pages above it: an entry point that serves the dashboard
passes its hook (``create_app(mounts=[radvigil.dashboard.site.mount])``, as ``radvigil serve``
does), so the import graph keeps the dashboard above the service.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from radvigil import __version__
from radvigil.config import Settings, get_settings
from radvigil.registry import Registry
from radvigil.service import apidocs, errors
from radvigil.service.middleware import RequestGuard
from radvigil.service.request_metrics import RequestMetrics
from radvigil.service.routes import (
    admin,
    audit,
    dicomweb,
    health,
    models,
    monitoring,
    notes,
    predict,
    predictions,
    review,
    traffic,
)
from radvigil.service.state import ServiceState
from radvigil.store import Database

log = logging.getLogger(__name__)
DESCRIPTION = (
    "Chest X-ray classification as **decision support**: every response carries calibrated "
    "probabilities, findings at the model's operating thresholds, quality/OOD flags and a review "
    "warning. Every route except `/health` needs an API key (`X-API-Key` or `Authorization: "
    "Bearer`)."
)
Mount = Callable[[FastAPI], None]  # adds routes (e.g. the dashboard's pages) to a built app


def create_app(
    settings: Settings | None = None,
    *,
    registry: Registry | None = None,
    db: Database | None = None,
    mounts: Sequence[Mount] = (),
) -> FastAPI:
    """Build the service; ``registry`` and ``db`` are seams for tests and embedding, and each
    of ``mounts`` adds what an entry point serves beside the API (the dashboard)."""
    settings = settings or get_settings()
    settings.ensure_home()
    registry = registry or Registry(
        settings.resolved_tracking_uri, settings.artifacts_dir, settings.home_dir / "model-cache"
    )
    state = ServiceState.build(settings, registry, db)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop()

    docs = settings.docs_enabled
    app = FastAPI(
        title="radvigil",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.radvigil = state
    errors.install(app)
    app.add_middleware(RequestGuard, state=state)
    if docs:
        apidocs.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    app.add_middleware(RequestMetrics, metrics=state.metrics)
    # Outermost: X-Forwarded-For/-Proto rewrite the client address and scheme only when the
    # connection comes from RADVIGIL_TRUSTED_PROXIES, so the invalid-key limiter, audit records
    # and the dashboard's Origin check see the real client (servers run proxy_headers=False).
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)

    routers = (
        health,
        models,
        predict,
        predictions,
        review,
        admin,
        traffic,
        audit,
        monitoring,
        notes,
        dicomweb,
    )
    for router in (module.router for module in routers):
        app.include_router(router)
    for mount in mounts:
        mount(app)
    return app
