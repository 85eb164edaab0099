"""``/docs``: the API reference as one self-contained page, with no script from a CDN.

FastAPI's Swagger UI page loads JavaScript and CSS from a CDN at a floating version without an
integrity check, and no pinned package ships the assets here; this page renders the same
OpenAPI document server-side instead (routes, summaries, parameters, responses) and sends a
CSP that allows no script at all. Machines read ``/openapi.json``.
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def render(spec: dict) -> str:
    """The HTML reference of an OpenAPI document."""
    rows = []
    for path, operations in sorted(spec.get("paths", {}).items()):
        for method, op in operations.items():
            params = ", ".join(escape(p["name"]) for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {})
            statuses = ", ".join(escape(code) for code in sorted(op.get("responses", {})))
            rows.append(
                f"<tr><td><b>{escape(method.upper())}</b></td><td><code>{escape(path)}</code>"
                f"</td><td>{escape(op.get('summary', ''))}</td><td>{params}</td>"
                f"<td>{escape(', '.join(body))}</td><td>{statuses}</td></tr>"
            )
    info = spec.get("info", {})
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{escape(info.get('title', 'API'))} API</title><style>body{{font-family:sans-serif;"
        "margin:2em}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}}"
        "</style></head><body>"
        f"<h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}</h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p><table>"
        "<tr><th>method</th><th>path</th><th>summary</th><th>parameters</th><th>body</th>"
        f"<th>responses</th></tr>{''.join(rows)}</table></body></html>"
    )


def install(app: FastAPI) -> None:
    """Serve :func:`render` of the app's own OpenAPI document at ``/docs``."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(render(app.openapi()), headers={"Content-Security-Policy": CSP})
