"""Patient notes through the real service: a real uvicorn server on a SQLite home,
and a minimal OpenAI-compatible chat server started here standing in for llama.cpp/vLLM/Ollama
(the language model itself is what cannot run in this test; its HTTP contract is real).

Notes read only stored predictions, so the predictions are stored records (with a site, a
study hash and an id that must never reach a note) rather than served ones: no model is
trained for this file.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI, Request

from radvigil.config import Settings
from radvigil.dashboard.session import SESSION_COOKIE, csrf_for
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.loop.note_desk import NoteDesk
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.store import (
    AuditLog,
    Database,
    KeyStore,
    NoteStore,
    PredictionStore,
    upgrade_database,
)
from tests.helpers import LiveServer, mlflow_store
from tests.unit.test_notes_desk import _record

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 3.0


def chat_server(mode: dict[str, str]) -> FastAPI:
    """An OpenAI-compatible /v1/chat/completions whose answer the test chooses."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict:
        payload = await request.json()
        assert payload["temperature"] == 0 and payload["max_tokens"] > 0
        note = payload["messages"][-1]["content"].split("Note:\n")[1].split("\n\n")[0]
        if mode["mode"] == "slow":
            await asyncio.sleep(TIMEOUT * 3)
        if mode["mode"] == "invent":
            note = note.replace("X-ray.", "X-ray. It also saw a small nodule.")
        else:
            note = note.replace("looked at", "checked")
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": note}}]}

    return app


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("notes-home")
    registry = Registry(mlflow_store(root / "mlflow.db"), root / "mlartifacts", root / "cache")
    mode = {"mode": "good"}
    with LiveServer(chat_server(mode)) as llm:
        settings = Settings(
            home=root,
            notes_rewriter="http",
            notes_url=f"{llm.url}/v1",
            notes_model="stand-in",
            notes_timeout_seconds=TIMEOUT,
        )
        app = create_app(settings, registry=registry, mounts=[dashboard_mount])
        keys = KeyStore(app.state.radvigil.db)
        tokens = {r: keys.create(f"{r}-key", r)[0] for r in ("clinician", "service", "auditor")}
        with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
            yield client, tokens, app.state.radvigil, mode


def _h(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def _predict(state) -> str:
    """A stored pneumonia prediction (flagged low quality) with a fresh request id."""
    rid = f"req-{uuid.uuid4().hex[:12]}"
    PredictionStore(state.db).add(_record(rid))
    return rid


def test_generate_review_approve_and_read_a_note(service):
    client, tokens, state, mode = service
    rid = _predict(state)
    assert (
        client.post(f"/v1/predictions/{rid}/note", headers=_h(tokens["auditor"])).status_code == 403
    )

    mode["mode"] = "good"
    draft = client.post(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"])).json()
    assert draft["status"] == "draft" and draft["source"] == "rewrite", draft
    assert draft["text"].startswith("A computer program checked your chest X-ray.")
    assert draft["rewriter"] == "http:stand-in" and draft["generated_by"] == "service-key"
    for secret in (rid, "Elsewhere", "9f9f", "2026"):
        assert secret not in draft["text"]
    assert (
        client.get(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"])).status_code == 409
    )

    mode["mode"] = "invent"
    draft = client.post(f"/v1/predictions/{rid}/note", headers=_h(tokens["clinician"])).json()
    assert draft["source"] == "template" and "finding_invented" in draft["fallback_reason"]
    assert "nodule" not in draft["text"]

    approve = f"/v1/predictions/{rid}/note/approve"
    assert client.post(approve, headers=_h(tokens["service"]), json={}).status_code == 403
    bad = client.post(approve, headers=_h(tokens["clinician"]), json={"text": "Call 0123456789."})
    assert bad.status_code == 400 and "ids or dates" in bad.json()["message"]
    ok = client.post(approve, headers=_h(tokens["clinician"]), json={})
    assert ok.status_code == 200 and ok.json()["approved_by"] == "clinician-key"
    final = client.get(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"])).json()
    assert final["text"] == draft["text"] and final["approved_by"] == "clinician-key"
    # Issue 30: a service key cannot undo the clinician's approval by regenerating.
    undo = client.post(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"]))
    assert undo.status_code == 403 and "label role" in undo.json()["message"]
    kept = client.get(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"])).json()
    assert kept["approved_by"] == "clinician-key" and kept["text"] == final["text"]

    audit = AuditLog(Database(state.db.url))
    actions = [e.action for e in audit.list(object_type="note", newest_first=False)]
    assert actions == ["note_generate", "note_regenerate", "note_approve"]
    assert audit.verify().ok
    metrics = client.get("/metrics", headers=_h(tokens["auditor"])).text
    assert 'radvigil_notes_generated_total{outcome="rewrite_kept"} 1.0' in metrics
    assert 'radvigil_notes_generated_total{outcome="rewrite_fallback"} 1.0' in metrics


def test_a_slow_endpoint_falls_back_within_the_timeout(service):
    client, tokens, state, mode = service
    rid = _predict(state)
    mode["mode"] = "slow"
    started = time.monotonic()
    draft = client.post(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"])).json()
    elapsed = time.monotonic() - started
    assert draft["source"] == "template"
    assert re.search(r"did not answer within 3.0 s", draft["fallback_reason"])
    assert elapsed < TIMEOUT + 2


def test_notes_on_postgresql(pg_url):
    db = Database(pg_url)
    upgrade_database(db)
    PredictionStore(db).add(_record())
    desk = NoteDesk(PredictionStore(db), NoteStore(db), AuditLog(db))
    stored, _ = desk.generate("req-7781-alpha", actor="svc")
    assert desk.approve("req-7781-alpha", actor="dr-a").text == stored.text
    assert desk.approved("req-7781-alpha").approved_at is not None
    db.dispose()


def test_the_study_page_shows_generates_and_approves_the_note(service):
    client, tokens, state, mode = service
    rid = _predict(state)
    token = tokens["clinician"]
    mode["mode"] = "good"
    with httpx.Client(base_url=str(client.base_url), timeout=60) as browser:
        browser.get("/dashboard/login")  # sessions are server-side: sign in like a person
        login = {"csrf": browser.cookies["radvigil_login_csrf"], "api_key": token}
        assert browser.post("/dashboard/login", data=login).status_code in (200, 303)
        assert "No note yet" in browser.get(f"/dashboard/review/{rid}").text
        form = {"csrf": csrf_for(browser.cookies[SESSION_COOKIE])}
        assert browser.post(f"/dashboard/review/{rid}/note", data=form).status_code == 303
        page = browser.get(f"/dashboard/review/{rid}").text
        assert "A computer program checked your chest X-ray." in page and "draft" in page
        edited = {**form, "text": "A clinician looked at your chest X-ray with you."}
        approve = f"/dashboard/review/{rid}/note/approve"
        assert browser.post(approve, data=edited).status_code == 303
        page = browser.get(f"/dashboard/review/{rid}").text
        assert "approved" in page and "by clinician-key" in page
    final = client.get(f"/v1/predictions/{rid}/note", headers=_h(tokens["service"])).json()
    assert final == final | {"text": edited["text"], "source": "clinician"}
