"""Production mode: a real audit secret required, Secure cookies, docs off; /docs loads no CDN."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from radvigil.config import Settings
from radvigil.dashboard.session import SESSION_COOKIE, set_cookie
from radvigil.service.apidocs import render

PROD_KEY = "a-production-audit-secret-of-40-characters"


def test_production_refuses_the_shipped_audit_secret() -> None:
    with pytest.raises(ValidationError, match="RADVIGIL_AUDIT_KEY"):
        Settings(env="production")
    settings = Settings(env="production", audit_key=PROD_KEY)
    assert settings.secure_cookies is True and settings.docs_enabled is False
    assert Settings(env="production", audit_key=PROD_KEY, docs=True).docs_enabled
    assert Settings().secure_cookies is None and Settings(cookie_secure=True).secure_cookies


def _request(settings: Settings) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(radvigil=SimpleNamespace(settings=settings)))
    scope = {
        "type": "http",
        "scheme": "http",
        "method": "POST",
        "path": "/dashboard/login",
        "query_string": b"",
        "headers": [(b"host", b"rv")],
        "app": app,
    }
    return Request(scope)


def test_cookie_is_secure_behind_a_tls_proxy_when_the_settings_say_so() -> None:
    for settings, secure in (
        (Settings(), False),
        (Settings(cookie_secure=True), True),
        (Settings(env="production", audit_key=PROD_KEY), True),
    ):
        response = Response()
        set_cookie(_request(settings), response, SESSION_COOKIE, "session-id", 60)
        assert ("Secure" in response.headers["set-cookie"]) == secure


def test_docs_page_has_no_script_and_no_external_resource() -> None:
    spec = {
        "info": {"title": "radvigil", "version": "1"},
        "paths": {"/v1/predict": {"post": {"summary": "<script>x</script>"}}},
    }
    html = render(spec)
    assert "<script" not in html and "cdn" not in html.lower() and "/v1/predict" in html
