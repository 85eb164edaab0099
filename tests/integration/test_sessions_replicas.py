"""Dashboard sessions shared by replicas: two uvicorn servers on one PostgreSQL database.

A sign-in on one replica works on the other, a sign-in through the OpenID provider may start on
one replica and come back to the other, a restarted replica still knows the sessions, and a
sign-out on one ends the session on both.
"""

from __future__ import annotations

from contextlib import ExitStack

import httpx
import pytest

from radvigil.config import Settings
from radvigil.dashboard.session import csrf_for
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.stack.processes import free_port
from radvigil.store import KeyStore
from tests.helpers import LiveServer, mlflow_store
from tests.idp import CALLBACK, ROLE_MAP, SECRETS, log_in_at_provider, running_provider

pytestmark = pytest.mark.integration


def _replica(pg_url: str, home, issuer: str, callback: str, registry: Registry):
    settings = Settings(
        home=home,
        database_url=pg_url,
        model_poll_seconds=3600,
        oidc_issuer=issuer,
        oidc_client_id="radvigil",
        oidc_client_secret=SECRETS["radvigil"],
        oidc_redirect_url=callback,
        oidc_scopes="openid profile groups",
        oidc_role_map=ROLE_MAP,
    )
    return create_app(settings, registry=registry, mounts=[dashboard_mount])


def test_a_session_works_on_every_replica_and_survives_a_restart(pg_url, tmp_path) -> None:
    port_a = free_port()
    callback = f"http://127.0.0.1:{port_a}{CALLBACK}"  # the one public URL, as behind a proxy
    registry = Registry(mlflow_store(tmp_path / "mlflow.db"), tmp_path / "art", tmp_path / "cache")
    with running_provider([callback]) as issuer, ExitStack() as stack:
        app_a = _replica(pg_url, tmp_path / "a", issuer, callback, registry)
        app_b = _replica(pg_url, tmp_path / "b", issuer, callback, registry)
        a = stack.enter_context(LiveServer(app_a, port=port_a))
        b = LiveServer(app_b).__enter__()
        stack.callback(b.__exit__, None, None, None)  # stopped early below; again is harmless
        token = KeyStore(app_a.state.radvigil.db).create("ana", "clinician")[0]
        # The cookie jar ignores ports, as a browser's does for one host behind a load balancer.
        browser = stack.enter_context(httpx.Client(timeout=30))
        browser.get(f"{a.url}/dashboard/login")
        signed = browser.post(
            f"{a.url}/dashboard/login",
            data={"csrf": browser.cookies["radvigil_login_csrf"], "api_key": token},
        )
        assert signed.status_code in (200, 303)
        key_session = browser.cookies["radvigil_session"]
        assert browser.get(f"{b.url}/dashboard/review", follow_redirects=False).status_code == 200

        person = stack.enter_context(httpx.Client(timeout=30))
        done = log_in_at_provider(person, f"{b.url}/dashboard/oidc/login", "carol")
        assert done.status_code == 200 and str(done.url).startswith(a.url)  # started on B
        person_session = person.cookies["radvigil_session"]
        assert person.get(f"{b.url}/dashboard/audit").status_code == 200

        b.__exit__(None, None, None)  # restart replica B
        app_b.state.radvigil.db.dispose()
        restarted = stack.enter_context(
            LiveServer(_replica(pg_url, tmp_path / "b", issuer, callback, registry))
        )
        for client, page in ((browser, "review"), (person, "audit")):
            response = client.get(f"{restarted.url}/dashboard/{page}", follow_redirects=False)
            assert response.status_code == 200
        out = browser.post(
            f"{restarted.url}/dashboard/logout",
            data={"csrf": csrf_for(key_session)},
            follow_redirects=False,
        )
        assert out.status_code == 303
        stale = httpx.Client(cookies={"radvigil_session": key_session}, timeout=30)
        with stale:
            assert stale.get(f"{a.url}/dashboard/review", follow_redirects=False).status_code == 303
        assert person.get(f"{a.url}/dashboard/audit").status_code == 200
        assert person_session != key_session
