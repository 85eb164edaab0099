"""Sign-in through a real OpenID provider in headless Chromium: the hospital account's groups
decide the role, and the dashboard shows the pages that role allows and refuses the others."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.service.app import create_app
from radvigil.stack.processes import free_port
from tests.browser.conftest import shot
from tests.helpers import LiveServer, mlflow_store
from tests.idp import CALLBACK, ROLE_MAP, SECRETS, running_provider

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@dataclass
class Site:
    url: str
    issuer: str
    state: object


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_provider([url + CALLBACK]) as issuer:
        settings = Settings(
            home=tmp_path_factory.mktemp("oidc-browser-home"),
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
            yield Site(url, issuer, app.state.radvigil)


@pytest.fixture()
def page(browser, site) -> Iterator:
    """A fresh browser context that may reach only radvigil and the provider (the provider's
    development login page imports a web font, which is refused here)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    allowed = {urlsplit(site.url).netloc, urlsplit(site.issuer).netloc}

    def only_local(route) -> None:
        if urlsplit(route.request.url).netloc in allowed:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_local)
    yield context.new_page()
    context.close()


def _sign_in(page, site: Site, login: str) -> None:
    page.goto(f"{site.url}/dashboard/login")
    page.click("#oidc-sign-in")
    page.wait_for_url(f"{site.issuer}/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")


def test_a_radiologist_signs_in_through_the_hospital_provider_and_sees_clinician_pages(
    page, site
) -> None:
    _sign_in(page, site, "alice")
    page.wait_for_url(f"{site.url}/dashboard/")
    assert page.inner_text(".who-name") == "oidc:alice"
    assert page.inner_text(".who .role") == "clinician"
    nav = page.locator("nav .nav a").all_inner_texts()
    assert "Review" in nav and "Audit" not in nav
    cookie = next(c for c in page.context.cookies() if c["name"] == "radvigil_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click("nav .nav a:text('Review')")
    page.wait_for_url(f"{site.url}/dashboard/review")
    assert page.locator("h1").first.is_visible()
    response = page.goto(f"{site.url}/dashboard/audit")
    assert response.status == 403 and "may not read audit" in page.inner_text("main")
    shot(page, "oidc-clinician-refused-audit")
    page.goto(f"{site.url}/dashboard/")
    page.click("text=Sign out")
    page.wait_for_url(f"{site.url}/dashboard/login")
    page.goto(f"{site.url}/dashboard/review")
    assert page.url.endswith("/dashboard/login")


def test_an_administrator_reaches_the_audit_log(page, site) -> None:
    _sign_in(page, site, "carol")
    page.wait_for_url(f"{site.url}/dashboard/")
    assert page.inner_text(".who .role") == "admin"
    page.click("nav .nav a:text('Audit')")
    page.wait_for_url(f"{site.url}/dashboard/audit")
    assert "oidc:carol" in page.inner_text("main")  # the sign-in itself is in the log


def test_a_visitor_without_a_mapped_group_gets_a_clear_refusal(page, site) -> None:
    _sign_in(page, site, "mallory")
    page.wait_for_url(f"{site.url}{CALLBACK}**")
    assert page.inner_text("h1") == "No radvigil role"
    assert "none of your groups" in page.inner_text("main")
    assert not [c for c in page.context.cookies() if c["name"] == "radvigil_session"]
    shot(page, "oidc-no-role")
