"""The loop's refusals and lineage on a small real slice, through a real uvicorn server, a real
registry and a real database: review and feedback, label and role errors, promote and rollback
with nothing to move, a retrain the gates stop (no alias moves), and a passing retrain's lineage.

The happy rollout (shadow, canary, promote, rollback, their audit records) is asserted once, by
test_scenario.py (the demo's own path), test_byom.py (an outside model through every route) and
test_stack.py (replicas following an alias move); it is not repeated here (issue #32)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from radvigil.config import Settings
from radvigil.demo.traffic_client import TrafficSimulator, load_studies
from radvigil.evaluation import criteria_from_dict
from radvigil.loop.actions import version_recorder
from radvigil.loop.retrain import retrain, site_calibrate
from radvigil.loop.training import run_training
from radvigil.loop.workspace import Workspace
from radvigil.registry import Tag
from radvigil.service.app import create_app
from radvigil.store import AuditLog, KeyStore
from tests.helpers import LiveServer, make_home, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE = "north"
LENIENT = {
    "n_resamples": 200,
    "gates": [
        {"kind": "non_inferiority", "metrics": ["auc"], "margin": 0.5},
        {"kind": "problem_cases", "metric": "accuracy", "margin": 0.5, "min_accuracy": 0.0},
    ],
}
IMPOSSIBLE = {
    "n_resamples": 200,
    "gates": [
        {"kind": "min_specificity", "default": 1.0},
        {"kind": "min_sensitivity", "default": 1.0},
    ],
}


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    home = make_home(root / "home")
    outcome = run_training(tiny_config(), home.data_version, home.catalog, home.registry)
    home.registry.set_alias(outcome.name, "champion", outcome.version, "test", "first")
    settings = Settings(
        home=root / "home",
        store_review_images=True,
        model_poll_seconds=0.5,
        monitor_interval_seconds=0,
    )
    app = create_app(settings, registry=home.registry)
    keys = KeyStore(app.state.radvigil.db)
    tokens = {
        r: keys.create(f"{r}-key", r, rate_limit=10_000)[0]
        for r in ("admin", "clinician", "service")
    }
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        yield home, client, tokens, app.state.radvigil


def _stream(client, token: str, bundled: Path, n: int, contrast: float) -> dict[str, str]:
    """Post real stream images of site north, half of each label (the stream opens with 80
    healthy studies), with a harsh contrast drop (quality-flagged drifters)."""
    frame = pd.read_csv(bundled / "stream.csv").groupby("label").head(n // 2)
    studies = load_studies(bundled, frame, [f"contrast:factor={contrast}"])
    sender = TrafficSimulator(client, token, json.dumps({"site": SITE}))
    return {s.request_id: s.label for s in sender.send(studies)}


def test_closed_loop(loop, bundled: Path) -> None:
    home, client, tokens, state = loop
    admin, clinician = {"X-API-Key": tokens["admin"]}, {"X-API-Key": tokens["clinician"]}
    truth = _stream(client, tokens["service"], bundled, 40, contrast=0.25)
    state.writer.flush()
    queue = client.get("/v1/review", headers=clinician, params={"limit": 500}).json()
    assert queue["total"] >= 30, queue["total"]
    first = queue["items"][0]["request_id"]
    assert client.get(f"/v1/review/{first}/image", headers=clinician).status_code == 200

    # bad input: unknown prediction, label outside the task, wrong role
    unknown = client.post(
        "/v1/feedback", headers=clinician, json={"prediction_id": "no-such-id", "label": "normal"}
    )
    assert unknown.status_code == 404
    outside = client.post(
        "/v1/feedback", headers=clinician, json={"prediction_id": first, "label": "tuberculosis"}
    )
    assert outside.status_code == 400 and "not a class" in outside.json()["message"]
    assert (
        client.post(
            "/v1/feedback",
            headers={"X-API-Key": tokens["service"]},
            json={"prediction_id": first, "label": "normal"},
        ).status_code
        == 403
    )

    for item in queue["items"]:
        response = client.post(
            "/v1/feedback",
            headers=clinician,
            json={"prediction_id": item["request_id"], "label": truth[item["request_id"]]},
        )
        assert response.status_code == 201
    assert client.get("/v1/review", headers=clinician).json()["total"] == 0

    # no challenger yet: promote is refused with one clear error, nothing changes
    refused = client.post("/v1/admin/rollout/promote", headers=admin, json={"reason": "try"})
    assert refused.status_code == 400, refused.text
    assert "no challenger" in refused.json()["message"]
    no_previous = client.post(
        "/v1/admin/rollout/rollback", headers=admin, json={"reason": "nothing to undo"}
    )
    assert no_previous.status_code == 400 and "no previous" in no_previous.json()["message"]

    champion = home.registry.load("chest-pneumonia@champion")
    record = version_recorder(state.audit, "chest-pneumonia")

    def workspace(criteria) -> Workspace:
        return Workspace(
            home.catalog,
            home.registry,
            state.predictions,
            state.feedback,
            criteria,
            home.root / "reports",
            record,
            "tester",
        )

    failed = retrain(champion, workspace(criteria_from_dict(IMPOSSIBLE)))
    assert not failed.passed
    assert "challenger" not in home.registry.aliases("chest-pneumonia")
    assert (
        client.post(
            "/v1/admin/rollout/promote", headers=admin, json={"reason": "should not"}
        ).status_code
        == 400
    )

    passed = retrain(champion, workspace(criteria_from_dict(LENIENT)))
    assert passed.passed and passed.feedback_cases >= 30
    assert home.registry.aliases("chest-pneumonia")["challenger"] == passed.version
    run = home.registry.run(home.registry.resolve(f"chest-pneumonia/{passed.version}").run_id)
    assert run.tags[Tag.PARENT_VERSION] == home.data_version
    assert run.tags[Tag.PROBLEM_CASES] == passed.problem_cases_version
    assert first in run.tags[Tag.FEEDBACK_IDS]

    actions = {e.action for e in AuditLog(state.db).list(limit=1000)}
    assert {"predict", "label", "retrain"} <= actions
    assert AuditLog(state.db).verify().ok

    _site_calibration_flags_the_site_at_its_own_threshold(
        home, client, tokens, workspace(criteria_from_dict(LENIENT)), champion, bundled
    )


def _site_calibration_flags_the_site_at_its_own_threshold(
    home, client, tokens, ws: Workspace, champion, bundled: Path
) -> None:
    """Site calibration with a site: the champion's weights, a threshold for north fitted on
    north's labelled cases outside the hold-out (cross-fitted rates recorded), and the service
    flags north's studies at it while other sites keep the version's (issue #29)."""
    outcome = site_calibrate(champion, ws, site=SITE, target_sensitivity=0.95, propose=False)
    resolved = home.registry.resolve(f"chest-pneumonia/{outcome.version}")
    change = json.loads(resolved.tags[Tag.SITE_CALIBRATION])["site"]
    data = home.catalog.load(outcome.data_version).frame
    fitted_on = data[(data["site"] == SITE) & (data["split"] != "test")]
    assert change["name"] == SITE and change["cases"] == len(fitted_on) >= 20
    card = home.registry.load(f"chest-pneumonia/{outcome.version}").card
    assert SITE in card.site_thresholds, change
    own = card.site_thresholds[SITE]["pneumonia"]
    assert own == change["thresholds"]["pneumonia"] != card.thresholds["pneumonia"]
    estimate = change["crossfit"]["pneumonia"]
    assert 0 <= estimate["specificity"] <= 1 and estimate["folds"] == 5

    home.registry.set_alias("chest-pneumonia", "champion", outcome.version, "test", "site cal.")
    service = {"X-API-Key": tokens["service"]}
    deadline = time.monotonic() + 30
    while client.get("/v1/model", headers=service).json()["champion"]["version"] != (
        outcome.version
    ):
        assert time.monotonic() < deadline, "the service never loaded the recalibrated version"
        time.sleep(0.5)
    served = client.get("/v1/model", headers=service).json()["champion"]
    assert served["site_thresholds"] == {SITE: {"pneumonia": own}}
    study = load_studies(bundled, pd.read_csv(bundled / "stream.csv").head(1))[0]
    answers = {}
    for site in (SITE, "elsewhere"):
        response = client.post(
            "/v1/predict",
            headers=service,
            files={"file": (study.name, study.png, "image/png")},
            data={"metadata": json.dumps({"site": site})},
        )
        assert response.status_code == 200, response.text
        answers[site] = response.json()
    assert answers[SITE]["thresholds"] == {"pneumonia": own}
    assert answers["elsewhere"]["thresholds"] == card.thresholds
    p = answers[SITE]["probabilities"]["pneumonia"]
    assert ("pneumonia" in answers[SITE]["findings"]) == (p >= own)
