"""A budgeted site's review queue on a real uvicorn server, real PostgreSQL and real registry:
the queue follows the selection policy, stays within the budget and records who chose each label.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pandas as pd
import pytest

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.demo.traffic_client import TrafficSimulator, load_studies
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from tests.helpers import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BUDGET = 12


def test_budgeted_queue_follows_the_policy(trained_home, tmp_path, pg_url, bundled: Path) -> None:
    home, outcome = trained_home
    bench_json = tmp_path / "site_onboarding.json"
    bench_json.write_text(
        json.dumps(
            {
                "cells": [
                    {
                        "repair": "head",
                        "budget": budget,
                        "policy": "uncertainty",
                        "means": {"specificity": {"value": spec, "low": spec - 0.1, "high": 0.9}},
                    }
                    for budget, spec in ((0, 0.42), (100, 0.73))
                ]
            }
        )
    )
    settings = Settings(
        onboarding_curve=bench_json,
        home=tmp_path / "home",
        database_url=pg_url,
        label_budgets={"north": BUDGET},
        label_policy="uncertainty",
        label_audit_share=0.25,
        review_audit_share=0.0,
    )
    app = create_app(settings, registry=home.registry, mounts=[dashboard_mount])
    state = app.state.radvigil
    keys = KeyStore(state.db)
    service = keys.create("service-key", "service", rate_limit=10_000)[0]
    clinician = {"X-API-Key": keys.create("clinician-key", "clinician", rate_limit=10_000)[0]}
    thresholds = home.registry.load(f"{outcome.name}@champion").card.operating_thresholds()
    frame = pd.read_csv(bundled / "stream.csv")
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        for site, rows in (("north", frame.head(30)), ("south", frame.iloc[30:36])):
            sender = TrafficSimulator(client, service, json.dumps({"site": site}))
            sender.send(load_studies(bundled, rows, prefix=site))
        state.writer.flush()

        answer = client.get("/v1/review", headers=clinician, params={"site": "north"}).json()
        items, budget = answer["items"], answer["label_budget"]
        assert answer["total"] == len(items) == BUDGET
        assert budget == {
            "budget": BUDGET,
            "period": "total",
            "policy": "uncertainty",
            "audit_share": 0.25,
            "spent": 0,
            "audit_spent": 0,
            "remaining": BUDGET,
        }
        assert all(i["site"] == "north" and i["why"] for i in items)
        audit = [i for i in items if i["policy"] == "audit"]
        chosen = [i for i in items if i["policy"] == "uncertainty"]
        assert len(audit) == 3 and len(chosen) == 9

        def margin(probabilities: dict[str, float]) -> float:
            return min(abs(probabilities[f] - t) for f, t in thresholds.items())

        # Ranked by distance from the version's operating threshold, nearest first, and no case
        # left out (bar the audit sample) is nearer than the farthest one offered.
        margins = [margin(i["probabilities"]) for i in chosen]
        assert margins == sorted(margins)
        offered = {i["request_id"] for i in items}
        left_out = [
            margin(r.probabilities)
            for r in state.predictions.list(limit=None)
            if r.site == "north" and r.id not in offered
        ]
        assert len(left_out) == 30 - BUDGET
        assert min(left_out) >= max(margins)

        # A site without a budget keeps the plain queue.
        south = client.get("/v1/review", headers=clinician, params={"site": "south"}).json()
        assert south["label_budget"] is None and all(i["policy"] is None for i in south["items"])

        # Before any label the dashboard shows the benchmark's curve for the site's policy.
        with httpx.Client(base_url=server.url, timeout=60) as browser:
            before = _dashboard_review(browser, clinician["X-API-Key"])
        assert "no site labels yet; held-out specificity the benchmark measured" in before
        assert "<td>100</td><td>73.0 % [63.0 %, 90.0 %]</td>" in before
        assert 'points="20.0,68.0 310.0,37.0"' in before
        assert before.count("no label yet") == 2

        # Labels spend the budget; each records the policy that offered the case.
        for item in (chosen[0], chosen[1], audit[0]):
            _label_keeps_its_policy(client, clinician, item)
        after = client.get("/v1/review", headers=clinician, params={"site": "north"}).json()
        assert after["label_budget"]["spent"] == 3
        assert after["label_budget"]["audit_spent"] == 1
        assert after["total"] == BUDGET - 3
        assert sum(i["policy"] == "audit" for i in after["items"]) == 2

        # The dashboard's review page shows the same queue, the budget and the audit estimate.
        with httpx.Client(base_url=server.url, timeout=60) as browser:
            page = _dashboard_review(browser, clinician["X-API-Key"])
        assert "Onboarding of north" in page and "3</strong> spent (1 on the audit sample)" in page
        assert all(i["request_id"] in page for i in after["items"])
        assert "uncertainty: uncertain:" in page
        # One audit label: an estimate with its interval for its class's rate, none for the other.
        assert page.count("no audit label yet") == 1 and "on 1 case</li>" in page
        # Measured on all three labels (apart from the audit estimate), and the site's own curve
        # (audit estimate after 1, 2 and 3 labels, the audit label given last) replaces the
        # benchmark's.
        assert "Learning curve: specificity estimated on the audit sample" in page
        measured = page.split('id="measured"')[1].split("</ul>")[0]
        assert sum(int(n) for n in re.findall(r" on (\d+) case", measured)) == 3
        curve = page.split('id="learning-curve"')[1].split("</table>")[0]
        assert [row.split("</td>")[0] for row in curve.split("<tr><td>")[1:]] == ["1", "2", "3"]

        # A case labelled after the queue has moved on (here: the budget was cut to what is
        # spent, so the queue offers nothing) keeps the policy that offered it, as recorded
        # when it was offered: the retraining set and the audit estimate rely on it.
        state.settings = state.settings.model_copy(update={"label_budgets": {"north": 3}})
        assert (
            client.get("/v1/review", headers=clinician, params={"site": "north"}).json()["items"]
            == []
        )
        _label_keeps_its_policy(client, clinician, after["items"][-1])


def _label_keeps_its_policy(client: httpx.Client, headers: dict, item: dict) -> None:
    """Label an offered case with its predicted class; the label records the offering policy."""
    response = client.post(
        "/v1/feedback",
        headers=headers,
        json={"prediction_id": item["request_id"], "label": item["predicted_class"]},
    )
    assert response.status_code == 201, response.text
    assert response.json()["policy"] == item["policy"]


def _dashboard_review(browser: httpx.Client, key: str) -> str:
    """The review page of site north, signed in with ``key``."""
    browser.get("/dashboard/login")
    csrf = browser.cookies["radvigil_login_csrf"]
    browser.post("/dashboard/login", data={"csrf": csrf, "api_key": key})
    return browser.get("/dashboard/review", params={"site": "north"}).text
