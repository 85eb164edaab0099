"""PACS in and out against a real Orthanc: C-STORE in, SR + Secondary Capture back, exactly once.

Orthanc (Debian's, DICOMweb plugin on, authentication on) routes a real radiograph to radvigil's
receiver with ``POST /modalities/radvigil/store``, as a site's routing rule would. The study is
predicted through the service's own path with a trained fast model, and the results must land
in the same study in Orthanc, read back by highdicom and checked by dciodvfy.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

import highdicom as hd
import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlalchemy import select

from radvigil.config import Settings
from radvigil.pacs.node import PacsNode, running_node
from radvigil.pacs.outbox import DEAD_LETTER_RULE
from radvigil.reports.dicom_sr import finding_code, probability_code
from radvigil.service.app import create_app
from radvigil.stack.processes import free_port
from radvigil.store import AlertStore, Database, KeyStore
from radvigil.store.pacs import PacsStore
from radvigil.store.tables import OutboxRow
from tests.helpers import LiveServer
from tests.orthanc import Orthanc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RADVIGIL_AE = "RADVIGIL"
CANARY = {
    "PatientName": "CANARYSURNAME^CANARYGIVEN",
    "PatientID": "CANARY-MRN-314159",
    "AccessionNumber": "CANARYACC77",
    "InstitutionName": "CANARY GENERAL HOSPITAL",
}
WAIT_S = 90.0


def canary_radiograph(bundled: Path) -> tuple[bytes, str]:
    """The bundled chest CR with canary patient fields and fresh study/series/instance UIDs."""
    ds = pydicom.dcmread(bundled / "dicom" / "RG1_chest_small_512.dcm")
    for keyword, value in CANARY.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), str(ds.StudyInstanceUID)


def wait_for(predicate, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def modalities(orthanc: Orthanc, study_uid: str) -> list[str]:
    return sorted(s["MainDicomTags"].get("Modality", "") for s in orthanc.series_of(study_uid))


def push(orthanc: Orthanc, data: bytes) -> str:
    """Store a file in Orthanc and route its study to radvigil by C-STORE; the study's id."""
    with orthanc.client() as client:
        stored = client.post("/instances", content=data).json()
        answer = client.post(
            "/modalities/radvigil/store",
            json={"Resources": [stored["ParentStudy"]], "Synchronous": True},
        )
        assert answer.status_code == 200, answer.text
    return stored["ParentStudy"]


def c_store(port: int, data: bytes, calling: str = "ORTHANC") -> int:
    """Send one instance to radvigil's receiver as the PACS would; the C-STORE status."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=RADVIGIL_AE)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def pacs_settings(root: Path, orthanc: Orthanc, port: int, **overrides) -> Settings:
    values = dict(
        home=root,
        batch_max_wait_ms=2.0,
        dicom_ae_title=RADVIGIL_AE,
        dicom_port=port,
        dicom_allowed_aes=[orthanc.aet],
        dicom_sites={orthanc.aet: "ward-7"},
        dicom_quiet_seconds=0.5,
        pacs_send="cstore",
        pacs_ae_title=orthanc.aet,
        pacs_port=orthanc.dicom_port,
        outbox_backoff_seconds=0.2,
        outbox_backoff_max_seconds=1.0,
        outbox_max_attempts=30,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def pacs(trained_home, tmp_path_factory):
    """Orthanc routing to a running radvigil DICOM node, plus the HTTP service on the same model."""
    home, _ = trained_home
    port = free_port()
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc"), radvigil=(RADVIGIL_AE, port))
    orthanc.start()
    settings = pacs_settings(tmp_path_factory.mktemp("pacs-home"), orthanc, port)
    app = create_app(Settings(home=tmp_path_factory.mktemp("http-home")), registry=home.registry)
    token = KeyStore(app.state.radvigil.db).create("reader", "clinician")[0]
    try:
        with running_node(settings, home.registry) as node, LiveServer(app) as server:
            yield orthanc, node, server.url, token
    finally:
        orthanc.remove()


def test_orthanc_study_gets_one_sr_and_one_sc_with_the_http_probability(
    pacs, bundled: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orthanc, node, url, token = pacs
    caplog.set_level(logging.DEBUG)  # pynetdicom's and every other logger at DEBUG
    data, study_uid = canary_radiograph(bundled)
    push(orthanc, data)
    found = wait_for(
        lambda: modalities(orthanc, study_uid) == ["CR", "OT", "SR"] or None,
        what="the SR and SC in Orthanc",
    )
    assert found
    with orthanc.client() as client:
        files = {}
        for series in orthanc.series_of(study_uid):
            modality = series["MainDicomTags"]["Modality"]
            assert len(series["Instances"]) == 1, modality
            files[modality] = client.get(f"/instances/{series['Instances'][0]}/file").content
    for modality in ("SR", "OT"):
        path = tmp_path / f"{modality}.dcm"
        path.write_bytes(files[modality])
        checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [ln for ln in checked.stderr.splitlines() if ln.startswith("Error")]
        assert errors == [], (modality, errors)
    sr = hd.sr.srread(io.BytesIO(files["SR"]))
    assert sr.StudyInstanceUID == study_uid
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == 1
    assert groups[0].finding_type == finding_code("pneumonia")
    (probability,) = groups[0].get_measurements(name=probability_code("pneumonia"))
    sc = pydicom.dcmread(io.BytesIO(files["OT"]))
    assert sc.BurnedInAnnotation == "YES" and sc.StudyInstanceUID == study_uid

    answer = httpx.post(
        f"{url}/v1/predict",
        headers={"X-API-Key": token},
        files={"file": ("study.dcm", data, "application/dicom")},
        timeout=60,
    ).json()
    assert probability.value == pytest.approx(answer["probabilities"]["pneumonia"], abs=1e-9)
    verdict = groups[0].get_qualitative_evaluations(name=finding_code("pneumonia"))[0].value
    expected = "Present" if "pneumonia" in answer["findings"] else "Absent"
    assert verdict.meaning == expected

    # The same study again: no new objects and no second prediction.
    stored_before = node.state.predictions.count()
    push(orthanc, data)
    time.sleep(node.settings.dicom_quiet_seconds + 3)
    assert modalities(orthanc, study_uid) == ["CR", "OT", "SR"]
    node.state.writer.flush()
    assert node.state.predictions.count() == stored_before
    assert node.metrics.instances.labels(orthanc.aet, "duplicate")._value.get() >= 1

    _assert_no_phi(node, caplog.text, study_uid)


def _assert_no_phi(node, logs: str, study_uid: str) -> None:
    """No canary string and no raw Study Instance UID in logs, DB rows, metrics or audit."""
    from prometheus_client import generate_latest

    secrets = [*CANARY.values(), "CANARYSURNAME", study_uid]
    db_text = []
    with node.state.db.engine.connect() as conn:
        for table in ("predictions", "audit_events", "pacs_outbox", "pacs_instances", "alerts"):
            db_text.extend(str(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table}"))
        outbox = conn.execute(select(OutboxRow)).all()
    assert outbox, "the outbox holds the delivered rows"
    metrics = generate_latest(node.state.metrics.registry).decode()
    for where, text in (("logs", logs), ("database", "\n".join(db_text)), ("metrics", metrics)):
        for secret in secrets:
            assert secret not in text, f"{secret[:6]}… found in {where}"


def _serve(settings: Settings, registry) -> None:
    PacsNode(settings, registry).serve()


def test_pacs_outage_and_radvigil_crash_deliver_exactly_once(
    pacs, trained_home, bundled: Path, tmp_path: Path
) -> None:
    orthanc, *_ = pacs
    home, _ = trained_home
    settings = pacs_settings(tmp_path / "home", orthanc, free_port())
    outbox = PacsStore(Database(settings.resolved_database_url))
    orthanc.stop()
    try:
        # radvigil in a child process, killed with SIGKILL while its results are pending.
        child = multiprocessing.get_context("fork").Process(
            target=_serve, args=(settings, home.registry), daemon=True
        )
        child.start()
        data, study_uid = canary_radiograph(bundled)
        wait_for(lambda: _accepts(settings.dicom_port), what="the child's receiver")
        assert c_store(settings.dicom_port, data) == 0x0000
        wait_for(
            lambda: [e for e in outbox.entries("pending") if e.attempts >= 1],
            what="a failed delivery attempt",
        )
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    finally:
        orthanc.start()
    with running_node(settings, home.registry) as node:
        wait_for(lambda: outbox.counts()["delivered"] == 2, what="delivery after the restart")
        node.state.writer.flush()
        assert node.state.predictions.count() == 1
    assert outbox.counts() == {"pending": 0, "delivered": 2, "dead": 0}
    series = orthanc.series_of(study_uid)
    assert sorted(s["MainDicomTags"]["Modality"] for s in series) == ["OT", "SR"]
    assert all(len(s["Instances"]) == 1 for s in series)


def _accepts(port: int) -> bool:
    ae = AE(ae_title="ORTHANC")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=RADVIGIL_AE)
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().Status) == 0
    assoc.release()
    return ok


def test_rejecting_pacs_ends_in_dead_letter_with_an_alert(
    pacs, trained_home, bundled: Path, tmp_path: Path
) -> None:
    orthanc, *_ = pacs
    home, _ = trained_home
    settings = pacs_settings(
        tmp_path / "home", orthanc, free_port(), pacs_ae_title="NOT-THE-PACS", outbox_max_attempts=2
    )
    data, _ = canary_radiograph(bundled)
    with running_node(settings, home.registry) as node:
        assert c_store(settings.dicom_port, data) == 0x0000
        wait_for(lambda: node.store.counts()["dead"] == 2, what="two dead letters")
        alerts = AlertStore(node.state.db).list()
        assert [a.rule for a in alerts] == [DEAD_LETTER_RULE]
        assert alerts[0].severity == "critical" and "radvigil dicom retry" in alerts[0].message
        assert node.metrics.dead_letters.labels("sr")._value.get() == 1
        dead = node.store.entries("dead")
        assert all(e.attempts == 2 and "no association" in (e.last_error or "") for e in dead)
        assert node.store.retry() == 2
        assert node.store.counts()["pending"] + node.store.counts()["dead"] == 2


def test_results_go_back_by_stow_rs_to_orthancs_dicomweb(
    pacs, trained_home, bundled: Path, tmp_path: Path
) -> None:
    orthanc, *_ = pacs
    home, _ = trained_home
    user, password = orthanc.auth
    settings = pacs_settings(
        tmp_path / "home",
        orthanc,
        free_port(),
        pacs_send="stowrs",
        pacs_stow_url=f"{orthanc.url}/dicom-web",
        pacs_username=user,
        pacs_password=password,
    )
    data, study_uid = canary_radiograph(bundled)
    with running_node(settings, home.registry) as node:
        assert c_store(settings.dicom_port, data) == 0x0000
        wait_for(lambda: node.store.counts()["delivered"] == 2, what="STOW-RS delivery")
        assert {e.destination for e in node.store.entries()} == {"stowrs"}
    assert modalities(orthanc, study_uid) == ["OT", "SR"]


def test_stow_rs_in_reaches_orthanc_as_sr_and_sc(pacs, trained_home, bundled: Path) -> None:
    """STOW-RS into the service on the listener's home; the listener sends the results back."""
    orthanc, node, *_ = pacs
    home, _ = trained_home
    app = create_app(Settings(home=node.settings.home), registry=home.registry)
    token = KeyStore(app.state.radvigil.db).create("stow-client", "clinician")[0]
    data, study_uid = canary_radiograph(bundled)
    boundary = "radvigil-stow"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with LiveServer(app) as server:
        answer = httpx.post(
            f"{server.url}/dicom-web/studies",
            content=body,
            headers={
                "X-API-Key": token,
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    wait_for(
        lambda: modalities(orthanc, study_uid) == ["OT", "SR"] or None,
        what="results of the STOW-RS study in Orthanc",
    )
