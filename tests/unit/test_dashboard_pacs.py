"""The dashboard's PACS page through the real app: connections without secrets, the outbox with
an audited, admin-only, CSRF-checked "retry now", and per-AE traffic computed in SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from radvigil.store.pacs import InstanceCreate, OutboxCreate, PacsStore
from radvigil.store.pacs_pull import PullStore
from radvigil.store.pacs_traffic import add_intake_counts

SECRETS = ("pull-password-XYZ", "stow-password-QRS", "embedded-pw")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture()
def app(tmp_path: Path):
    settings = Settings(
        home=tmp_path / "home",
        dicom_allowed_aes=["ORTHANC"],
        dicom_sites={"ORTHANC": "ward-7"},
        dicom_pull_sources=[
            {
                "name": "MAIN-PACS",
                "url": "http://pacs-user:embedded-pw@pacs.example:8042/dicom-web",
                "username": "pacs-user",
                "password": SECRETS[0],
                "site": "north",
            }
        ],
        pacs_send="stowrs",
        pacs_stow_url="http://pacs.example:8042/dicom-web",
        pacs_username="stow-user",
        pacs_password=SECRETS[1],
    )
    app = create_app(settings, mounts=[dashboard_mount])
    db = app.state.radvigil.db
    store = PacsStore(db)
    for n, (ae, state) in enumerate(
        [("ORTHANC", "predicted"), ("ORTHANC", "predicted"), ("ORTHANC", "refused")]
    ):
        store.record(
            InstanceCreate(
                sop_key=f"sop{n}",
                study_key="study-a" if n < 2 else "study-b",
                model_version="3",
                calling_ae=ae,
                state=state,  # type: ignore[arg-type]
                prediction_id=f"p{n}" if state == "predicted" else None,
            ),
            [_outbox(n, kind) for kind in ("sr", "sc")] if state == "predicted" else [],
        )
    store.record(
        InstanceCreate(
            sop_key="pulled",
            study_key="study-c",
            model_version="3",
            calling_ae="MAIN-PACS",
            state="predicted",
            prediction_id="p9",
        )
    )
    entries = sorted(store.claim("test", 60.0, limit=3), key=lambda e: e.id)
    assert store.failed(entries[0].id, "test", "no association with ORTHANC@pacs:4242", None)
    assert store.failed(entries[1].id, "test", "no association with ORTHANC@pacs:4242", None)
    assert store.delivered(entries[2].id, "test")
    seen = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    add_intake_counts(db, {("ORTHANC", "stored"): (3, seen), ("ORTHANC", "ignored"): (2, seen)})
    add_intake_counts(db, {("ORTHANC", "refused"): (1, seen), ("ORTHANC", "stored"): (1, seen)})
    PullStore(db).polled("MAIN-PACS", None, "pull source MAIN-PACS: unreachable (ConnectionError)")
    return app


def _outbox(n: int, kind: str) -> OutboxCreate:
    return OutboxCreate(
        prediction_id=f"p{n}",
        model_name="cxr",
        model_version="3",
        kind=kind,  # type: ignore[arg-type]
        destination="stowrs",
        calling_ae="ORTHANC",
        sop_instance_uid=f"2.25.{n}{1 if kind == 'sr' else 2}",
        file=f"{n}-{kind}.dcm",
    )


def signed_in(app, role: str) -> TestClient:
    token = KeyStore(app.state.radvigil.db).create(f"{role}-1", role)[0]
    client = TestClient(app)
    client.get("/dashboard/login")
    csrf = client.cookies["radvigil_login_csrf"]
    answer = client.post(
        "/dashboard/login", data={"csrf": csrf, "api_key": token}, follow_redirects=False
    )
    assert answer.status_code == 303
    return client


def test_page_shows_connections_outbox_and_traffic_without_secrets(app) -> None:
    page = signed_in(app, "clinician").get("/dashboard/pacs")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/dashboard/pacs" aria-current="page">PACS</a>' in html
    assert "<code>RADVIGIL</code>" in html and "<code>ORTHANC</code>" in html
    assert "http://pacs.example:8042/dicom-web" in html and "STOW-RS to" in html
    assert "unreachable (ConnectionError)" in html  # the pull source's last poll
    for secret in SECRETS:
        assert secret not in html
    assert "dead-lettered 2" in html and "delivered 1" in html and "pending 1" in html
    traffic = re.search(r'<tr data-ae="ORTHANC">(.*?)</tr>', html, re.S)
    assert traffic is not None
    cells = re.findall(r"<td>(.*?)</td>", traffic.group(1))
    # received, ignored, refused at intake | studies, predicted, refused by the worker
    assert cells[1:7] == ["7", "2", "1", "2", "2", "1"]
    assert 'data-ae="MAIN-PACS"' in html
    assert "Retry now" not in html  # clinicians see no retry buttons


def test_retry_is_admin_only_csrf_checked_and_audited(app) -> None:
    clinician = signed_in(app, "clinician")
    csrf = CSRF.search(clinician.get("/dashboard/pacs").text).group(1)  # type: ignore[union-attr]
    refused = clinician.post("/dashboard/pacs/retry", data={"csrf": csrf, "ids": "all"})
    assert refused.status_code == 403

    admin = signed_in(app, "admin")
    page = admin.get("/dashboard/pacs?show=dead").text
    dead = [int(i) for i in re.findall(r'data-outbox="(\d+)" data-state="dead"', page)]
    assert len(dead) == 2 and page.count("Retry now") == 2
    forged = admin.post("/dashboard/pacs/retry", data={"csrf": "wrong", "ids": str(dead[0])})
    assert forged.status_code == 403
    bad = admin.post(
        "/dashboard/pacs/retry",
        data={"csrf": CSRF.search(page).group(1), "ids": "1;DROP"},  # type: ignore[union-attr]
    )
    assert bad.status_code == 400
    answer = admin.post(
        "/dashboard/pacs/retry",
        data={"csrf": CSRF.search(page).group(1), "ids": str(dead[0])},  # type: ignore[union-attr]
        follow_redirects=False,
    )
    assert answer.status_code == 303 and "retried=1" in answer.headers["location"]
    store = PacsStore(app.state.radvigil.db)
    assert store.counts()["dead"] == 1
    assert {e.id for e in store.entries("dead")} == {dead[1]}
    (event,) = app.state.radvigil.audit.list(action="pacs_retry")
    assert event.actor == "admin-1" and event.object_id == str(dead[0])
    assert event.details["requeued"] == 1


def test_signed_out_visitors_are_sent_to_sign_in(app) -> None:
    answer = TestClient(app).get("/dashboard/pacs", follow_redirects=False)
    assert answer.status_code in (302, 303, 307)
    assert "/dashboard/login" in answer.headers["location"]
