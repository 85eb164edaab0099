"""Pull mode against a real Orthanc (DICOMweb plugin, authentication on): QIDO-RS + WADO-RS in.

A real radiograph is uploaded to Orthanc; ``PacsNode.pull_once`` (what ``radvigil dicom pull``
runs) finds it by QIDO-RS, fetches it by WADO-RS, predicts it through the service's path with a
trained fast model, and sends the SR and SC back into the same study by STOW-RS. A second poll
fetches and predicts nothing. With Orthanc down the poll fails with a clear error, records
nothing as pulled, and the next poll after Orthanc is back gets the study.
"""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from radvigil.cli import app as cli_app
from radvigil.config import Settings, reset_settings
from radvigil.pacs.node import PacsNode
from radvigil.stack.processes import free_port
from radvigil.store import Database
from radvigil.store.pacs_pull import PullStore
from radvigil.store.pacs_traffic import ae_traffic
from tests.integration.test_pacs import _assert_no_phi, canary_radiograph, modalities
from tests.orthanc import Orthanc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOURCE = "MAIN-PACS"


@pytest.fixture()
def orthanc(tmp_path_factory):
    """An Orthanc per test: each test's home must see only its own studies."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc-pull"))
    server.start()
    try:
        yield server
    finally:
        server.remove()


def pull_settings(root: Path, orthanc: Orthanc, **overrides) -> Settings:
    user, password = orthanc.auth
    values = dict(
        home=root,
        batch_max_wait_ms=2.0,
        dicom_pull_sources=[
            {
                "name": SOURCE,
                "url": f"{orthanc.url}/dicom-web",
                "username": user,
                "password": password,
                "site": "ward-9",
            }
        ],
        pacs_send="stowrs",
        pacs_stow_url=f"{orthanc.url}/dicom-web",
        pacs_username=user,
        pacs_password=password,
    )
    values.update(overrides)
    return Settings(**values)


def todays_radiograph(bundled: Path) -> tuple[bytes, str]:
    """The canary radiograph, dated today (pull mode searches recent studies)."""
    data, study_uid = canary_radiograph(bundled)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyDate = datetime.now(UTC).strftime("%Y%m%d")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), study_uid


def upload(orthanc: Orthanc, data: bytes) -> None:
    with orthanc.client() as client:
        answer = client.post("/instances", content=data)
        assert answer.status_code == 200, answer.text


def pull(settings: Settings, registry):
    """One ``radvigil dicom pull``: a fresh node, one poll, predictions, deliveries."""
    node = PacsNode(settings, registry, receive=False)
    return node, asyncio.run(node.pull_once())


def test_pull_predicts_once_and_the_sr_and_sc_land_in_orthanc(
    orthanc, trained_home, bundled: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home, _ = trained_home
    caplog.set_level(logging.DEBUG)  # dicomweb-client's and urllib3's loggers at DEBUG
    settings = pull_settings(tmp_path / "home", orthanc)
    data, study_uid = todays_radiograph(bundled)
    upload(orthanc, data)

    node, (outcome,) = pull(settings, home.registry)
    assert outcome.error is None and outcome.report is not None
    assert (outcome.report.fetched, outcome.report.stored) == (1, 1)
    assert node.store.counts() == {"pending": 0, "delivered": 2, "dead": 0}
    assert modalities(orthanc, study_uid) == ["CR", "OT", "SR"]
    (record,) = node.state.predictions.list()
    assert record.site == "ward-9"
    (traffic,) = ae_traffic(node.state.db)
    assert (traffic.calling_ae, traffic.received, traffic.studies, traffic.predicted) == (
        SOURCE,
        1,
        1,
        1,
    )

    # A second poll: the CR is already pulled, our SR and SC are not CR/DX. Nothing new.
    again, (second,) = pull(settings, home.registry)
    assert second.error is None and second.report is not None
    assert (second.report.fetched, second.report.skipped) == (0, 1)
    assert again.state.predictions.count() == 1
    assert modalities(orthanc, study_uid) == ["CR", "OT", "SR"]
    assert again.store.counts()["delivered"] == 2
    _assert_no_phi(again, caplog.text, study_uid)
    with again.state.db.engine.connect() as conn:
        rows = " ".join(map(str, conn.exec_driver_sql("SELECT * FROM pacs_pulled")))
    assert rows and study_uid not in rows


def test_orthanc_down_is_a_clear_error_and_nothing_is_lost(
    orthanc, trained_home, bundled: Path, tmp_path: Path
) -> None:
    home, _ = trained_home
    settings = pull_settings(tmp_path / "home", orthanc)
    pulled = PullStore(Database(settings.resolved_database_url))
    data, study_uid = todays_radiograph(bundled)
    upload(orthanc, data)
    orthanc.stop()
    try:
        node, (outcome,) = pull(settings, home.registry)
        assert outcome.report is None
        assert outcome.error is not None and "unreachable (ConnectionError)" in outcome.error
        assert SOURCE in outcome.error and study_uid not in outcome.error
        assert node.state.predictions.count() == 0
        checkpoint = pulled.checkpoint(SOURCE)
        assert checkpoint is not None and checkpoint.since is None
        assert checkpoint.last_error == outcome.error
    finally:
        orthanc.start()
    node, (outcome,) = pull(settings, home.registry)
    assert outcome.error is None and outcome.report is not None
    assert outcome.report.stored == 1
    assert node.state.predictions.count() == 1
    assert modalities(orthanc, study_uid) == ["CR", "OT", "SR"]
    checkpoint = pulled.checkpoint(SOURCE)
    assert checkpoint is not None and checkpoint.last_error is None
    assert checkpoint.since == datetime.now(UTC).date()


def test_cli_pull_with_an_unreachable_pacs_exits_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    monkeypatch.setenv("RADVIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RADVIGIL_DATABASE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RADVIGIL_DICOM_PULL_SOURCES", f'[{{"name": "GONE", "url": "{dead}"}}]')
    reset_settings()
    try:
        result = CliRunner().invoke(cli_app, ["dicom", "pull"])
    finally:
        reset_settings()
    assert result.exit_code != 0
    assert "pull source GONE" in result.output and "unreachable" in result.output
    assert "Traceback" not in result.output
