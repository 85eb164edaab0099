"""Issue 30's service findings, reproduced against real uvicorn servers on SQLite homes.

Two services: one trusting no proxy, one trusting loopback as its proxy (as a TLS-terminating
nginx would be). No model is trained: every route here answers before a model is needed, and
feedback reads a stored prediction record.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import httpx
import pytest

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.store import KeyStore, PredictionStore
from radvigil.store.leases import LeaseStore
from tests.helpers import LiveServer, mlflow_store
from tests.unit.test_notes_desk import _record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _service(root, trusted: list[str]):
    registry = Registry(mlflow_store(root / "mlflow.db"), root / "mlartifacts", root / "cache")
    settings = Settings(home=root, trusted_proxies=trusted, invalid_key_rate_limit=3)
    app = create_app(settings, registry=registry, mounts=[dashboard_mount])
    keys = KeyStore(app.state.radvigil.db)
    tokens = {
        "admin": keys.create("admin-key", "admin")[0],
        "clinician": keys.create("clinician-key", "clinician")[0],
        "auditor3": keys.create("auditor-3", "auditor", rate_limit=3)[0],
        "clinician5": keys.create("clinician-5", "clinician", rate_limit=5)[0],
    }
    return app, tokens


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    direct, direct_tokens = _service(tmp_path_factory.mktemp("no-proxy"), [])
    proxied, proxied_tokens = _service(tmp_path_factory.mktemp("proxied"), ["127.0.0.1"])
    with LiveServer(direct) as one, LiveServer(proxied) as two:
        yield (
            (one, direct_tokens, direct.state.radvigil),
            (two, proxied_tokens, proxied.state.radvigil),
        )


def _h(token: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": token, **extra}


def test_forbidden_calls_are_rate_limited_before_they_are_audited(services) -> None:
    (live, tokens, state), _ = services
    with httpx.Client(base_url=live.url, timeout=60) as client:
        codes = [
            client.post("/v1/monitoring/run", headers=_h(tokens["auditor3"])).status_code
            for _ in range(6)
        ]
    assert codes[:3] == [403, 403, 403] and set(codes[3:]) == {429}
    assert len(state.audit.list(action="auth.forbidden", actor="auditor-3", limit=10)) == 3


def test_review_explanations_pay_the_explain_cost_and_wait_for_a_slot(services) -> None:
    (live, tokens, _), _ = services
    with httpx.Client(base_url=live.url, timeout=60) as client:
        first = client.get("/v1/review/no-such-case/explain", headers=_h(tokens["clinician5"]))
        second = client.get("/v1/review/no-such-case/explain", headers=_h(tokens["clinician5"]))
    assert first.status_code == 404  # charged 1 + (explain_rate_cost - 1) = 5 tokens
    assert second.status_code == 429 and second.json()["code"] == "rate_limited"

    (live, tokens, state), _ = services
    slots, waiting = state.explain_slots, state.explain_waiting
    state.explain_slots = asyncio.Semaphore(0)  # every slot taken...
    state.explain_waiting = state.settings.explain_queue  # ...and the queue full
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            busy = client.get("/v1/review/no-such-case/explain", headers=_h(tokens["admin"]))
    finally:
        state.explain_slots, state.explain_waiting = slots, waiting
    assert busy.status_code == 429 and busy.json()["code"] == "explain_busy"


def test_monitoring_runs_are_single_flight_across_replicas(services) -> None:
    (live, tokens, state), _ = services
    leases, name = LeaseStore(state.db), f"monitor-run:{state.settings.model_name}"
    assert leases.claim(name, "another-replica", 60)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        busy = client.post("/v1/monitoring/run", headers=_h(tokens["admin"]))
        assert busy.status_code == 409 and "already in progress" in busy.json()["message"]
        leases.release(name, "another-replica")
        free = client.post("/v1/monitoring/run", headers=_h(tokens["admin"]))
    assert free.status_code == 503  # no champion here: it ran, and gave its lease back
    assert leases.holder(name) is None


def test_note_generation_runs_on_the_heavy_pool(services) -> None:
    (live, tokens, state), _ = services
    rid = f"req-{uuid.uuid4().hex[:12]}"
    PredictionStore(state.db).add(_record(rid))
    threads: list[str] = []
    original = state.notes.generate

    def recording(*args, **kwargs):  # a seam on the live desk: records the worker thread
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    state.notes.generate = recording
    try:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            made = client.post(f"/v1/predictions/{rid}/note", headers=_h(tokens["clinician"]))
    finally:
        del state.notes.generate
    assert made.status_code == 200 and threads and threads[0].startswith("radvigil-heavy")


def test_feedback_comments_with_patient_identifiers_are_refused(services) -> None:
    (live, tokens, state), _ = services
    rid = f"req-{uuid.uuid4().hex[:12]}"
    PredictionStore(state.db).add(_record(rid))
    body = {"prediction_id": rid, "label": "normal", "comment": "discussed with Mrs Jones"}
    with httpx.Client(base_url=live.url, timeout=60) as client:
        refused = client.post("/v1/feedback", headers=_h(tokens["clinician"]), json=body)
        body["comment"] = "faint opacity at the left base"
        kept = client.post("/v1/feedback", headers=_h(tokens["clinician"]), json=body)
    assert refused.status_code == 422 and "names, ids or dates" in refused.text
    assert kept.status_code == 201


def _sign_in(url: str, token: str, **headers: str) -> httpx.Response:
    """A fresh browser's sign-in: the form (its CSRF cookie), then the POST with ``headers``."""
    with httpx.Client(base_url=url, timeout=60) as browser:
        browser.get("/dashboard/login")
        form = {"csrf": browser.cookies["radvigil_login_csrf"], "api_key": token}
        return browser.post("/dashboard/login", data=form, headers=headers)


def test_forwarded_headers_count_only_from_trusted_proxies(services) -> None:
    (direct, _, direct_state), (proxied, _, proxied_state) = services
    forged = {"X-API-Key": "rvk_abc_wrong", "X-Forwarded-For": "203.0.113.7"}
    with httpx.Client(base_url=direct.url, timeout=60) as client:
        assert client.get("/v1/model", headers=forged).status_code == 401
    failed = direct_state.audit.list(action="auth.failed", limit=1)[0]
    assert failed.actor == "client:127.0.0.1"  # the forged header was ignored
    with httpx.Client(base_url=proxied.url, timeout=60) as client:
        codes = [client.get("/v1/model", headers=forged).status_code for _ in range(4)]
        other = {**forged, "X-Forwarded-For": "203.0.113.8"}
        assert client.get("/v1/model", headers=other).status_code == 401  # its own bucket
    assert codes == [401, 401, 401, 429]
    actors = {e.actor for e in proxied_state.audit.list(action="auth.failed", limit=10)}
    assert actors == {"client:203.0.113.7", "client:203.0.113.8"}


def test_sign_ins_are_charged_and_https_origins_pass_behind_a_trusted_proxy(services) -> None:
    (direct, tokens, _), (proxied, proxied_tokens, _) = services
    host = httpx.URL(proxied.url).netloc.decode()
    via = {"X-Forwarded-For": "10.9.9.9"}
    tls = {"Origin": f"https://{host}", "X-Forwarded-Proto": "https", **via}
    codes = [_sign_in(proxied.url, proxied_tokens["clinician"], **tls).status_code]
    codes += [
        _sign_in(proxied.url, proxied_tokens["clinician"], **via).status_code for _ in range(3)
    ]
    assert codes == [303, 303, 303, 429]  # 3 sign-ins a minute per address in these settings
    direct_host = httpx.URL(direct.url).netloc.decode()
    untrusted = {"Origin": f"https://{direct_host}", "X-Forwarded-Proto": "https"}
    refused = _sign_in(direct.url, tokens["clinician"], **untrusted)
    assert refused.status_code == 403 and "another site" in refused.text


def test_audit_coverage_and_signed_head_on_postgresql(pg_url: str) -> None:
    """JSONB probabilities, timestamps and key rows read back exactly as they were digested."""
    from sqlalchemy import text

    from radvigil.loop.actions import label_case
    from radvigil.service.sinks import AuditedPredictions
    from radvigil.store import AuditLog, Database, FeedbackStore, upgrade_database

    upgrade_database(pg_url)
    db = Database(pg_url)
    log = AuditLog(db)  # the settings key, as KeyStore signs with it too
    AuditedPredictions(PredictionStore(db), log).add_many([_record("p1"), _record("p2")])
    label_case(PredictionStore(db), FeedbackStore(db), log, "p1", "normal", "dr-a", "left base")
    KeyStore(db).create("svc", "service")
    assert log.verify().ok and log.verify(full=False).from_id == log.verify().last_id
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE predictions SET findings = '[]' WHERE id = 'p2'"))
    assert "p2's outputs differ" in (log.verify().reason or "")
    with db.engine.begin() as conn:
        conn.execute(text("""UPDATE predictions SET findings = '["pneumonia"]' WHERE id = 'p2'"""))
        conn.execute(text("DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)"))
    assert "removed from the end" in (log.verify(full=False).reason or "")
    db.dispose()
