"""OpenID Connect sign-in against a real provider (node-oidc-provider) and a real uvicorn server.

Covers the authorization-code flow with PKCE end to end, role mapping from groups (pages the
role allows, pages it does not), a group with no role, a wrong audience, an expired ID token,
a replayed state, and the audit trail of sign-in and sign-out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from radvigil.config import Settings
from radvigil.dashboard.session import csrf_for
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.errors import AuthError
from radvigil.service.app import create_app
from radvigil.service.oidc import LEEWAY_SECONDS, NoRoleError, OidcClient
from radvigil.stack.processes import free_port
from radvigil.store.keys import hash_token
from tests.helpers import LiveServer, mlflow_store
from tests.idp import (
    CALLBACK,
    ROLE_MAP,
    SECRETS,
    log_in_at_provider,
    provider_tokens,
    running_provider,
)

pytestmark = pytest.mark.integration


@dataclass
class Signin:
    url: str
    issuer: str
    state: object
    elsewhere: str  # a redirect URI of the provider's clients where nothing listens


@pytest.fixture(scope="module")
def signin(tmp_path_factory) -> Iterator[Signin]:
    port, elsewhere = free_port(), f"http://127.0.0.1:{free_port()}/cb"
    url = f"http://127.0.0.1:{port}"
    with running_provider([url + CALLBACK, elsewhere]) as issuer:
        settings = Settings(
            home=tmp_path_factory.mktemp("oidc-home"),
            model_poll_seconds=3600,
            oidc_issuer=issuer,
            oidc_client_id="radvigil",
            oidc_client_secret=SECRETS["radvigil"],
            oidc_redirect_url=url + CALLBACK,
            oidc_scopes="openid profile groups",
            oidc_role_map=ROLE_MAP,
        )
        mlflow_store(settings.home_dir / "mlflow.db")
        app = create_app(settings, mounts=[dashboard_mount])
        with LiveServer(app, port=port):
            yield Signin(url, issuer, app.state.radvigil, elsewhere)


def _client(signin: Signin) -> httpx.Client:
    return httpx.Client(base_url=signin.url, timeout=30)


def test_code_flow_with_pkce_signs_a_clinician_in_with_the_pages_the_role_allows(signin) -> None:
    with _client(signin) as browser:
        start = browser.get("/dashboard/oidc/login", follow_redirects=False)
        query = parse_qs(urlsplit(start.headers["location"]).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
        assert query["nonce"] and query["state"] and "code_verifier" not in query
        done = log_in_at_provider(browser, str(start.url), "alice")
        assert done.status_code == 200 and str(done.url).startswith(signin.url + CALLBACK)
        session_id = browser.cookies["radvigil_session"]
        assert browser.get("/dashboard/review").status_code == 200
        assert browser.get("/dashboard/models").status_code == 200
        refused = browser.get("/dashboard/audit")
        assert refused.status_code == 403 and "clinician" in refused.text
        page = browser.get("/dashboard/").text
        assert "oidc:alice" in page and 'href="/dashboard/audit"' not in page
        signed = signin.state.audit.list(action="dashboard_sign_in", limit=5)
        assert any(e.actor == "oidc:alice" and e.details["role"] == "clinician" for e in signed)
        out = browser.post(
            "/dashboard/logout", data={"csrf": csrf_for(session_id)}, follow_redirects=False
        )
        assert out.status_code == 303
        assert signin.state.sessions.get(session_id) is None
        gone = signin.state.audit.list(action="dashboard_sign_out", limit=5)
        assert any(e.actor == "oidc:alice" and e.object_type == "person" for e in gone)
    with httpx.Client(base_url=signin.url, cookies={"radvigil_session": session_id}) as stale:
        assert stale.get("/dashboard/review", follow_redirects=False).status_code == 303


def test_the_first_mapped_group_decides_and_an_auditor_reads_the_audit_log(signin) -> None:
    with _client(signin) as browser:
        log_in_at_provider(browser, "/dashboard/oidc/login", "dave")  # radiologists + admins
        assert "admin" in browser.get("/dashboard/").text
        assert browser.get("/dashboard/audit").status_code == 200
    with _client(signin) as browser:
        log_in_at_provider(browser, "/dashboard/oidc/login", "bob")
        assert browser.get("/dashboard/audit").status_code == 200
        assert browser.get("/dashboard/review").status_code == 403


def test_a_person_whose_groups_map_to_no_role_is_refused_with_a_page(signin) -> None:
    with _client(signin) as browser:
        done = log_in_at_provider(browser, "/dashboard/oidc/login", "mallory")
        assert done.status_code == 403
        assert "No radvigil role" in done.text and "none of your groups" in done.text
        assert "radvigil_session" not in browser.cookies
        assert browser.get("/dashboard/", follow_redirects=False).status_code == 303
    refused = signin.state.audit.list(action="dashboard_sign_in_refused", limit=5)
    assert refused and refused[0].details == {"method": "oidc", "person": "oidc:mallory"}


def test_a_replayed_or_foreign_callback_is_refused(signin) -> None:
    with _client(signin) as browser:
        done = log_in_at_provider(browser, "/dashboard/oidc/login", "alice")
        assert done.status_code == 200
        replay = browser.get(str(done.url).removeprefix(signin.url))
        assert replay.status_code == 401 and "not started here" in replay.text
    with _client(signin) as other_browser:  # a callback URL planted in another browser
        start = other_browser.get("/dashboard/oidc/login", follow_redirects=False)
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    with _client(signin) as victim:
        planted = victim.get(f"{CALLBACK}?code=x&state={state}")
        assert planted.status_code == 401 and "radvigil_session" not in victim.cookies


def _relying_party(signin: Signin, client_id: str, **kw) -> OidcClient:
    return OidcClient(
        signin.issuer,
        client_id,
        SECRETS[client_id],
        signin.elsewhere,
        scopes="openid profile groups",
        role_map=ROLE_MAP,
        **kw,
    )


def test_an_id_token_for_another_client_is_refused(signin) -> None:
    tokens = provider_tokens(signin.issuer, "other-app", signin.elsewhere, "alice")
    other = _relying_party(signin, "other-app")
    assert other.validate(tokens["id_token"], "n-0")["aud"] == "other-app"  # valid for its owner
    with pytest.raises(AuthError, match="aud"):
        _relying_party(signin, "radvigil").validate(tokens["id_token"], "n-0")


def test_an_expired_id_token_and_a_wrong_nonce_are_refused(signin) -> None:
    tokens = provider_tokens(signin.issuer, "radvigil-short", signin.elsewhere, "alice")
    claims = _relying_party(signin, "radvigil-short").validate(tokens["id_token"], "n-0")
    assert claims["exp"] - claims["iat"] == 2  # the provider's short-lived ID token
    late = _relying_party(
        signin, "radvigil-short", clock=lambda: claims["exp"] + LEEWAY_SECONDS + 1
    )
    with pytest.raises(AuthError, match="expired"):
        late.validate(tokens["id_token"], "n-0")
    with pytest.raises(AuthError, match="nonce"):
        _relying_party(signin, "radvigil-short").validate(tokens["id_token"], "another-nonce")
    with pytest.raises(NoRoleError, match="none of your groups"):
        _relying_party(signin, "radvigil").identity({"sub": "m", "groups": ["visitors"]})


def test_an_expired_id_token_at_the_callback_fails_the_sign_in(signin) -> None:
    client = signin.state.oidc
    real_clock = client.clock
    client.clock = lambda: real_clock() + 2 * 3600  # the provider's 1 h ID token, 2 h later
    try:
        with _client(signin) as browser:
            done = log_in_at_provider(browser, "/dashboard/oidc/login", "alice")
            assert done.status_code == 401 and "expired" in done.text
            assert "radvigil_session" not in browser.cookies
    finally:
        client.clock = real_clock
    failed = signin.state.audit.list(action="dashboard_sign_in_failed", limit=5)
    assert failed and failed[0].details == {"method": "oidc"}


def test_sessions_are_stored_hashed(signin) -> None:
    with _client(signin) as browser:
        log_in_at_provider(browser, "/dashboard/oidc/login", "carol")
        session_id = browser.cookies["radvigil_session"]
    from sqlalchemy import select

    from radvigil.store.tables import DashboardSessionRow

    with signin.state.db.session("read") as session:
        stored = session.scalars(select(DashboardSessionRow.id_hash)).all()
    assert hash_token(session_id) in stored and session_id not in stored


def test_sign_in_starts_are_charged_to_the_client_address(signin, tmp_path) -> None:
    from radvigil.registry import Registry

    settings = Settings(
        home=tmp_path,
        model_poll_seconds=3600,
        invalid_key_rate_limit=2,
        oidc_issuer=signin.issuer,
        oidc_client_id="radvigil",
        oidc_client_secret=SECRETS["radvigil"],
        oidc_redirect_url=signin.elsewhere,
        oidc_role_map=ROLE_MAP,
    )
    registry = Registry(mlflow_store(tmp_path / "mlflow.db"), tmp_path / "art", tmp_path / "c")
    with (
        LiveServer(create_app(settings, registry=registry, mounts=[dashboard_mount])) as live,
        httpx.Client() as browser,
    ):
        codes = [
            browser.get(f"{live.url}/dashboard/oidc/login", follow_redirects=False).status_code
            for _ in range(3)
        ]
    assert codes == [303, 303, 429]
