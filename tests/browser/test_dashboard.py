"""The dashboard in headless Chromium on a seeded service: roles, pages, forms and security."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from tests.browser.conftest import shot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.integration]


def chart_drawn(page, chart_id: str) -> bool:
    """Whether Chart.js drew a chart on the canvas bound to ``chart_id``."""
    return page.evaluate(
        "(id) => { const c = document.querySelector(`canvas[data-chart='${id}']`);"
        " return !!(c && window.Chart && window.Chart.getChart(c)); }",
        chart_id,
    )


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(
    open_session, seeded
) -> None:
    session = open_session("")
    page = session.page
    page.goto(f"{seeded.url}/dashboard/")
    assert page.url.endswith("/dashboard/login")
    page.fill("#api_key", "rvk_not_a_real_key")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text(".alert-bad")
    session.errors.clear()  # the 401 answer to the wrong key is logged by the browser
    sign_in(page, seeded.url, seeded.tokens["clinician"])
    cookie = next(c for c in session.context.cookies() if c["name"] == "radvigil_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert page.evaluate("document.cookie") == ""  # not readable from scripts
    page.click("text=Sign out")
    page.wait_for_url(f"{seeded.url}/dashboard/login")
    assert not [c for c in session.context.cookies() if c["name"] == "radvigil_session"]
    page.goto(f"{seeded.url}/dashboard/models")
    assert page.url.endswith("/dashboard/login")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (768, 1024)])
def test_overview_shows_served_model_traffic_queue_and_alerts(
    open_session, seeded, width: int, height: int
) -> None:
    page = open_session("admin", width, height).page
    page.goto(f"{seeded.url}/dashboard/")
    assert "Champion" in page.inner_text(".served-champion")
    assert "chest-pneumonia" in page.inner_text(".served-champion")
    assert chart_drawn(page, "traffic-chart")
    assert int(page.inner_text("#queue-size")) > 0
    assert int(page.inner_text("#open-alerts")) == seeded.alerts
    assert "Decision support" in page.inner_text(".notice")
    assert no_horizontal_scroll(page)
    shot(page, f"overview-{width}")


def test_drift_page_timeline_embedding_map_and_report(open_session, seeded) -> None:
    session = open_session("admin")
    page = session.page
    page.goto(f"{seeded.url}/dashboard/")
    if seeded.alerts:
        rows = page.locator("tr", has_text="overall").filter(has_text="drift")
        rows = rows if rows.count() else page.locator("tr", has_text="drift")
        rows.first.locator("a", has_text="Timeline").click()
        page.wait_for_url(re.compile(r".*/dashboard/drift\?detector=.*"))
        assert page.locator("#detector-alerts tbody tr").count() >= 1
        assert page.locator("#ranking tbody tr").count() >= 1
    else:
        page.goto(f"{seeded.url}/dashboard/drift")
    assert chart_drawn(page, "timeline-chart")
    assert chart_drawn(page, "embedding-chart")
    for stat in ("mean", "std", "sharpness"):
        assert chart_drawn(page, f"hist-{stat}")
    shot(page, "drift-1280")
    link = page.locator("#windows a", has_text="Evidently report").first
    with page.expect_popup() as popup:
        link.click()
    report = popup.value
    report.wait_for_load_state()
    report.wait_for_selector("text=Drift", timeout=60_000)  # drawn by its own inline scripts
    assert len(report.content()) > 100_000
    shot(report, "drift-evidently-report")
    report.close()


def test_performance_page_shows_labelled_and_estimated_metrics(open_session, seeded) -> None:
    page = open_session("auditor").page
    page.goto(f"{seeded.url}/dashboard/performance")
    assert "accuracy" in page.inner_text("#labelled-metrics")
    assert chart_drawn(page, "accuracy-chart")
    assert chart_drawn(page, "estimate-chart")
    shot(page, "performance-1280")


def test_clinician_labels_a_study_and_it_leaves_the_queue(open_session, seeded) -> None:
    page = open_session("clinician").page
    page.goto(f"{seeded.url}/dashboard/review")
    total = int(page.inner_text("#queue-total").split()[0])
    row = page.locator("tr[data-request-id]").first
    request_id = row.get_attribute("data-request-id")
    row.locator("text=Open").click()
    page.wait_for_selector("#study-canvas[data-loaded='true']")
    assert "Decision support only" in page.inner_text(".details")
    page.fill("#ww", "120")  # narrower window: brighter contrast on the canvas
    page.dispatch_event("#ww", "input")
    shot(page, "review-study-windowed-1280")
    page.check("#overlay-toggle")
    page.wait_for_selector("#study-canvas[data-overlay='shown']", timeout=60_000)
    shot(page, "review-study-gradcam-1280")
    label = seeded.true_labels.get(request_id, "normal")
    page.check(f"input[name=label][value={label}]")
    page.fill("#comment", "Checked on the dashboard")
    page.click("text=Save label")
    page.wait_for_selector("#labelled-notice")
    assert int(page.inner_text("#queue-total").split()[0]) == total - 1
    assert page.locator(f"tr[data-request-id='{request_id}']").count() == 0
    stored = seeded.state.feedback.list(prediction_id=request_id)
    assert [(f.label, f.reviewer) for f in stored] == [(label, "clinician-ana")]


def test_clinician_sees_no_rollout_buttons_and_a_forced_post_is_refused(
    open_session, seeded
) -> None:
    session = open_session("clinician", 768, 1024)
    page = session.page
    page.goto(f"{seeded.url}/dashboard/models")
    assert page.locator("#rollout-actions").count() == 0
    assert page.locator("button", has_text="Promote").count() == 0
    assert "Audit" not in page.inner_text("nav")
    shot(page, "models-clinician-768")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    forced = page.request.post(
        f"{seeded.url}/dashboard/models/promote",
        form={"csrf": csrf, "reason": "forcing a promotion"},
    )
    assert forced.status == 403
    without_token = page.request.post(
        f"{seeded.url}/dashboard/review/x/label", form={"label": "normal"}
    )
    assert without_token.status == 403  # no CSRF token
    with seeded.api("clinician") as api:
        refused = api.post("/v1/admin/rollout/promote", json={"reason": "forcing a promotion"})
    assert refused.status_code == 403
    page.goto(f"{seeded.url}/dashboard/audit")
    assert page.locator("h1").inner_text() == "Not allowed"
    session.errors.clear()  # the 403 page load is logged by the browser


def test_admin_promotes_the_challenger_then_rolls_back(open_session, seeded) -> None:
    challenger = seeded.challenger.result(timeout=600)
    seeded.state.models.refresh()
    page = open_session("admin").page
    page.goto(f"{seeded.url}/dashboard/models")
    assert page.locator(f"tr[data-version='{challenger}']").inner_text().count("challenger")
    page.click("#rollout-actions >> text=Promote")
    dialog = page.locator("#dialog-promote")
    assert dialog.is_visible()
    dialog.locator("textarea").fill("Passed its gates on the retraining data")
    shot(page, "models-promote-dialog-1280")
    dialog.locator("text=Confirm promote").click()
    page.wait_for_selector("#done-notice")
    assert f"v{challenger}" in page.inner_text(".served-champion")
    assert "previous" in page.inner_text("tr[data-version='1']")
    assert page.locator("#rollout-actions >> text=Rollback").count() == 1
    assert "Passed its gates" in page.inner_text("#alias-history")
    shot(page, "models-after-promote-1280")
    page.click("#rollout-actions >> text=Rollback")
    page.locator("#dialog-rollback textarea").fill("Rolling back for the test")
    page.locator("#dialog-rollback >> text=Confirm rollback").click()
    page.wait_for_selector("#done-notice")
    assert "v1" in page.inner_text(".served-champion")
    events = [e.action for e in seeded.state.audit.list(limit=20)]
    assert "promote" in events and "rollback" in events


def test_audit_page_filters_verifies_and_exports_csv(open_session, seeded) -> None:
    page = open_session("auditor", 768, 1024).page
    page.goto(f"{seeded.url}/dashboard/audit")
    assert "Hash chain verified" in page.inner_text("#chain-status")
    assert page.locator("#audit-table tbody tr").count() > 10
    assert "Review" not in page.inner_text("nav")
    shot(page, "audit-768")
    page.fill("#f-action", "label")
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*action=label.*"))
    actions = page.locator("#audit-table tbody tr td:nth-child(4)").all_inner_texts()
    assert actions and set(actions) == {"label"}
    with page.expect_download() as download:
        page.click("#csv-export")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert rows and {r["action"] for r in rows} == {"label"}
    assert all(len(r["hash"]) == 64 for r in rows)


def test_audit_json_routes_need_the_auditor_role(seeded) -> None:
    with seeded.api("auditor") as api:
        events = api.get("/v1/audit", params={"action": "predict", "limit": 5})
        assert events.status_code == 200 and len(events.json()) == 5
        assert {e["action"] for e in events.json()} == {"predict"}
        verified = api.get("/v1/audit/verify").json()
        assert verified["ok"] is True and verified["checked"] > 0
        traffic = api.get("/v1/traffic").json()
        assert (
            traffic["total"] >= 60
            and sum(b["count"] for b in traffic["buckets"]) == traffic["total"]
        )
    with seeded.api("clinician") as api:
        assert api.get("/v1/audit").status_code == 403


def test_review_explain_route_returns_a_png_without_logging_a_prediction(seeded) -> None:
    with seeded.api("clinician") as api:
        queue = api.get("/v1/review", params={"limit": 50}).json()
        case = next(i for i in queue["items"] if i["has_image"])
        before = seeded.state.predictions.count()
        response = api.get(f"/v1/review/{case['request_id']}/explain")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert seeded.state.predictions.count() == before


def test_pages_name_no_external_resource(seeded) -> None:
    """Belt and braces beside the request recording: no page, stylesheet or script of ours
    refers to another origin, and every page forbids loading from one (CSP)."""
    admin = seeded.state.keys.get("admin-key")
    cookies = {"radvigil_session": seeded.state.sessions.create_for_key(admin)}
    with (
        httpx.Client(base_url=seeded.url, timeout=60) as anonymous,
        httpx.Client(base_url=seeded.url, cookies=cookies, timeout=60) as client,
    ):
        pages = [client.get(f"/dashboard{p}") for p in ("/", "/drift", "/performance")]
        pages += [client.get(f"/dashboard{p}") for p in ("/review", "/models", "/audit")]
        pages.append(anonymous.get("/dashboard/login"))
        for response in pages:
            assert response.status_code == 200, response.url
            assert not re.search(r"(src|href|action)=\"(https?:)?//", response.text), response.url
            assert "default-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
        for asset in ("dashboard.css", "dashboard.js"):
            assert "://" not in client.get(f"/dashboard/static/{asset}").text
