"""STOW-RS into the DICOM spool: the real app in-process (TestClient), a real SQLite store.

No model is loaded (the spool only), so the test needs no training; the worker's side of the
path is covered by tests/integration/test_pacs.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from radvigil.config import Settings
from radvigil.pacs.intake import UNSUPPORTED_SYNTAX
from radvigil.pacs.spool import DicomSpool
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from tests.helpers import mlflow_store

BOUNDARY = "radvigil-test-boundary"


def _multipart(*parts: bytes) -> bytes:
    body = b""
    for part in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture()
def client(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    registry = Registry(mlflow_store(tmp_path / "mlflow.db"), tmp_path / "art", tmp_path / "cache")
    app = create_app(settings, registry=registry)
    token = KeyStore(app.state.radvigil.db).create("pacs", "clinician")[0]
    with TestClient(app) as test_client:
        yield test_client, token, settings


def test_stow_spools_radiographs_ignores_others_and_refuses_the_undecodable(
    client, bundled: Path
) -> None:
    http, token, settings = client
    chest = (bundled / "dicom" / "RG1_chest_small_512.dcm").read_bytes()
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    rle = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    rle.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    headers = {
        "X-API-Key": token,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    }
    body = _multipart(chest, ct, _bytes(rle))
    answer = http.post("/dicom-web/studies", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert len(body["00081199"]["Value"]) == 2
    (failed,) = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [UNSUPPORTED_SYNTAX]
    (study,) = DicomSpool(settings.dicom_spool_dir).studies()
    assert study.instances[0].calling_ae == "DICOMWEB"


def test_stow_needs_a_key_and_multipart(client) -> None:
    http, token, _ = client
    assert http.post("/dicom-web/studies", content=b"x").status_code == 401
    wrong = http.post(
        "/dicom-web/studies",
        content=b"x",
        headers={"X-API-Key": token, "Content-Type": "application/dicom"},
    )
    assert wrong.status_code == 415
