"""The loop's refusals and lineage on a small real slice, through a real uvicorn server, a real
registry and a real database: review and feedback, label and role errors, promote and rollback
with nothing to move, a retrain the gates stop (no alias moves), and a passing retrain's lineage.

The happy rollout (shadow, canary, promote, rollback, their audit records) is asserted once, by
test_scenario.py (the demo's own path), test_byom.py (an outside model through every route) and
test_stack.py (replicas following an alias move); it is not repeated here (issue #32)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
import pytest

from radvigil.config import Settings
from radvigil.demo.traffic_client import TrafficSimulator, load_studies
from radvigil.evaluation import criteria_from_dict
from radvigil.loop.actions import version_recorder
from radvigil.loop.retrain import retrain
from radvigil.loop.training import run_training
from radvigil.loop.workspace import Workspace
from radvigil.registry import Tag
from radvigil.service.app import create_app
from radvigil.store import AuditLog, KeyStore
from tests.helpers import LiveServer, make_home, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
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
    """Post real stream images with a harsh contrast drop (quality-flagged drifters)."""
    frame = pd.read_csv(bundled / "stream.csv").head(n)
    studies = load_studies(bundled, frame, [f"contrast:factor={contrast}"])
    return {s.request_id: s.label for s in TrafficSimulator(client, token).send(studies)}


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
