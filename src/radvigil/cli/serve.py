"""``radvigil serve``: run the inference service with uvicorn."""

from __future__ import annotations

import typer
import uvicorn

from radvigil.config import get_settings


def serve_command(
    host: str | None = typer.Option(None, help="Bind address (RADVIGIL_HOST, default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (RADVIGIL_PORT, default 8000)."),
) -> None:
    """Serve the champion of RADVIGIL_MODEL_NAME over HTTP (OpenAPI docs at /docs)."""
    from radvigil.dashboard.site import mount
    from radvigil.service.app import create_app

    settings = get_settings()
    app = create_app(settings, mounts=[mount])
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # the app trusts forwarded headers from RADVIGIL_TRUSTED_PROXIES
    )
