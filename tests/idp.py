"""A real OpenID provider for sign-in tests: ``tests/oidc/provider.mjs`` under Node, on loopback.

The provider is node-oidc-provider (pinned in ``tests/oidc/package.json``; ``npm ci --prefix
tests/oidc`` installs it, as ``make test`` does). :func:`sign_in` drives its development login
form over HTTP the way a browser would, following every redirect back to radvigil's callback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from radvigil.stack.processes import free_port

PROVIDER_DIR = Path(__file__).parent / "oidc"
CALLBACK = "/dashboard/oidc/callback"
ROLE_MAP = {"admins": "admin", "radiologists": "clinician", "auditors": "auditor"}
SECRETS = {c: f"{c}-secret" for c in ("radvigil", "radvigil-short", "other-app")}
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


@contextmanager
def running_provider(redirect_uris: Sequence[str]) -> Iterator[str]:
    """Start the provider on a free loopback port; yields its issuer URL."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OpenID provider needs Node 20+ and `npm ci --prefix tests/oidc`")
    port = free_port()
    process = subprocess.Popen(
        [node, str(PROVIDER_DIR / "provider.mjs"), str(port), *redirect_uris],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("READY "):
            pytest.fail(f"the OpenID provider did not start (exit code {process.poll()})")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def log_in_at_provider(client: httpx.Client, start: str, login: str) -> httpx.Response:
    """Follow ``start`` to the provider's login form, sign in as ``login`` and follow the
    redirects back to the relying party; returns the last response (radvigil's callback)."""
    form = client.get(start, follow_redirects=True)
    assert form.status_code == 200, form.text
    action = _FORM_ACTION.search(form.text)
    assert action is not None, form.text
    return client.post(
        urljoin(str(form.url), action.group(1)),
        data={"prompt": "login", "login": login, "password": "any"},
        follow_redirects=True,
    )


def provider_tokens(issuer: str, client_id: str, redirect_uri: str, login: str) -> dict:
    """Run the authorization-code + PKCE flow for ``client_id`` directly; the token response."""
    from authlib.common.security import generate_token
    from authlib.integrations.httpx_client import OAuth2Client

    with OAuth2Client(
        client_id,
        SECRETS[client_id],
        scope="openid profile groups",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    ) as oauth:
        verifier = generate_token(64)
        url, _ = oauth.create_authorization_url(
            f"{issuer}/auth", code_verifier=verifier, nonce="n-0"
        )
        with httpx.Client(timeout=30) as browser:
            form = browser.get(url, follow_redirects=True)
            action = _FORM_ACTION.search(form.text)
            assert action is not None, form.text
            back = browser.post(
                urljoin(str(form.url), action.group(1)),
                data={"prompt": "login", "login": login, "password": "any"},
                follow_redirects=False,
            )
            while back.status_code in (302, 303) and not back.headers["location"].startswith(
                redirect_uri
            ):
                back = browser.get(urljoin(str(back.url), back.headers["location"]))
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        return oauth.fetch_token(
            f"{issuer}/token",
            grant_type="authorization_code",
            code=code,
            code_verifier=verifier,
        )
