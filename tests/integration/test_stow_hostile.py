"""STOW-RS on a real uvicorn server against hostile bodies: no PHI in answers or logs, no 5xx.

The service runs in this process (so every logger, uvicorn's and pydicom's at DEBUG included,
reaches ``caplog``) with a real SQLite store and an empty local registry: STOW-RS only admits
and spools, no model is needed. Patient fields hold canary strings; none of them, nor a raw
Study Instance UID, may appear in any answer body or log line. pydicom's own test files, as
they are and relabelled as CR, must each get a clear status.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from radvigil.config import Settings
from radvigil.pacs.receiver import CR
from radvigil.registry import Registry
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from tests.helpers import LiveServer
from tests.unit.malformed import pydicom_files

pytestmark = [pytest.mark.integration]

BOUNDARY = "radvigil-hostile"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
CANARY = {
    "PatientName": "CANARYSTOWNAME^CANARYGIVEN",
    "PatientID": "CANARY-STOW-MRN-2718",
    "AccessionNumber": "CANARYSTOWACC",
    "PatientBirthDate": "19010203",
    "InstitutionName": "CANARY STOW HOSPITAL",
}
CLEAR_FAILURES = {0xA900, 0xC000, 0xA700, 0xC122}


@pytest.fixture()
def stow(tmp_path: Path):
    settings = Settings(home=tmp_path / "home", max_request_bytes=4_000_000)
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "art", tmp_path / "cache")
    app = create_app(settings, registry=registry)
    # a PACS key sends many studies a minute: its rate limit is set for that, as a site would
    token = KeyStore(app.state.radvigil.db).create("pacs", "clinician", rate_limit=100_000)[0]
    with LiveServer(app, log_level="debug") as server, httpx.Client(base_url=server.url) as http:
        yield http, token


def _multipart(*parts: bytes, boundary: str = BOUNDARY) -> bytes:
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
        body += b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _canary_cr(bundled: Path) -> tuple[pydicom.Dataset, str]:
    ds = pydicom.dcmread(bundled / "dicom" / "RG1_chest_small_512.dcm")
    for keyword, value in CANARY.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds, str(ds.StudyInstanceUID)


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _hostile_bodies(bundled: Path) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """(name, content type, body) of each hostile request, and the study UIDs they carry."""
    ds, study = _canary_cr(bundled)
    whole = _bytes(ds)
    no_pixels = ds.copy()
    del no_pixels.PixelData
    rle, rle_study = _canary_cr(bundled)
    rle.file_meta.TransferSyntaxUID = RLELossless  # claims a syntax nothing here decodes
    rle.PixelData = encapsulate([rle.PixelData])
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in CANARY.items():
        setattr(ct, keyword, value)
    ct_study = str(ct.StudyInstanceUID)
    no_study = ds.copy()
    del no_study.StudyInstanceUID
    canary_text = " ".join(CANARY.values()).encode()
    bodies = [
        ("valid radiograph", MULTIPART, _multipart(whole)),
        ("truncated header", MULTIPART, _multipart(whole[:700])),
        ("truncated pixels", MULTIPART, _multipart(whole[: len(whole) // 2])),
        ("no pixel data", MULTIPART, _multipart(_bytes(no_pixels))),
        ("no study uid", MULTIPART, _multipart(_bytes(no_study))),
        ("undecodable syntax", MULTIPART, _multipart(_bytes(rle))),
        ("ignored CT", MULTIPART, _multipart(_bytes(ct))),
        ("text part", MULTIPART, _multipart(canary_text)),
        ("DICM magic then text", MULTIPART, _multipart(b"\0" * 128 + b"DICM" + canary_text)),
        ("mixed", MULTIPART, _multipart(whole, whole[:900], canary_text)),
        ("no parts", MULTIPART, f"--{BOUNDARY}--\r\n".encode()),
        ("wrong boundary", MULTIPART, _multipart(whole, boundary="other")),
        ("not multipart", "application/dicom", whole),
        ("canary in media type", f"text/plain; name={CANARY['PatientID']}", canary_text),
        ("too large", MULTIPART, _multipart(whole + b"\0" * 4_000_000)),
    ]
    return bodies, [study, rle_study, ct_study]


def test_hostile_stow_bodies_leak_no_canary_or_study_uid(
    stow, bundled: Path, caplog: pytest.LogCaptureFixture
) -> None:
    http, token = stow
    caplog.set_level(logging.DEBUG)
    bodies, studies = _hostile_bodies(bundled)
    answers = {}
    for name, content_type, body in bodies:
        answer = http.post(
            "/dicom-web/studies",
            content=body,
            headers={"X-API-Key": token, "Content-Type": content_type},
            timeout=60,
        )
        answers[name] = answer.status_code
        assert answer.status_code < 500, (name, answer.text)
        for secret in [*CANARY.values(), *studies]:
            assert secret not in answer.text, (name, secret)
    unauthenticated = http.post("/dicom-web/studies", content=bodies[0][2])
    assert unauthenticated.status_code == 401
    assert CANARY["PatientID"] not in unauthenticated.text
    assert answers["valid radiograph"] == 200 and answers["ignored CT"] == 200
    assert answers["mixed"] == 202 and answers["truncated header"] == 409
    assert answers["undecodable syntax"] == 409 and answers["not multipart"] == 415
    assert answers["too large"] == 413
    logs = caplog.text
    assert caplog.records, "the logs were captured"
    for secret in [*CANARY.values(), *studies]:
        assert secret not in logs, secret


def _corpus() -> list[tuple[str, bytes]]:
    """pydicom's test files as they are, and re-saved as CR images where they can be."""
    out = []
    for path in pydicom_files():
        out.append((path.name, path.read_bytes()))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True)
                ds.SOPClassUID, ds.Modality = CR, "CR"
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=False)
        except Exception:  # not writable as DICOM: the file as it is was sent above
            continue
        out.append((f"{path.name}-as-CR", buffer.getvalue()))
    return out


@pytest.mark.slow
def test_pydicom_test_files_by_stow_rs_each_get_a_clear_status(
    stow, caplog: pytest.LogCaptureFixture
) -> None:
    http, token = stow
    caplog.set_level(logging.DEBUG)
    corpus = _corpus()
    assert len(corpus) > 300, "pydicom ships a few hundred test files"
    statuses: dict[int, int] = {}
    headers = {"X-API-Key": token, "Content-Type": MULTIPART}
    for name, data in corpus:
        answer = http.post("/dicom-web/studies", content=_multipart(data), headers=headers)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        assert answer.status_code in (200, 409, 413), (name, answer.status_code, answer.text)
        if answer.status_code == 409:
            (failed,) = answer.json()["00081198"]["Value"]
            assert failed["00081197"]["Value"][0] in CLEAR_FAILURES, name
    assert statuses.get(200, 0) > 0 and statuses.get(409, 0) > 0, statuses
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    still = http.post("/dicom-web/studies", content=_multipart(ct), headers=headers)
    assert still.status_code == 200, "the service is still up"
    names = set()
    for _, data in corpus:
        try:
            name = str(pydicom.dcmread(io.BytesIO(data), force=True).get("PatientName", ""))
        except Exception:  # unreadable files carry no name to leak
            continue
        if len(name) > 4:
            names.add(name)
    assert [n for n in names if n in caplog.text] == []
