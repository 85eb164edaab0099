"""Issue 15's reproductions against a real uvicorn server: each is now a 4xx or harmless.

Parallel Grad-CAM, decode bombs, keyless giant uploads, the input-triggered 500s, all-or-nothing
batches, the input contract (formats by magic bytes, refusals), every test file pydicom ships
through every upload endpoint, and a DICOM full of PHI that must leave no trace anywhere.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.service.app import create_app
from radvigil.store import KeyStore
from tests.helpers import LiveServer
from tests.unit.malformed import dicom, png, pydicom_corpus, reproductions, with_raw_tag

pytestmark = [pytest.mark.integration, pytest.mark.slow]
UPLOADS = ("/v1/predict", "/v1/predict/batch", "/v1/predict/explain")


@pytest.fixture(scope="module")
def server(trained_home, tmp_path_factory):
    home, _ = trained_home
    root = tmp_path_factory.mktemp("safety-home")
    settings = Settings(
        home=root, batch_max_wait_ms=2.0, explain_queue=16, store_review_images=True
    )
    app = create_app(settings, registry=home.registry, mounts=[dashboard_mount])
    state = app.state.radvigil
    token = KeyStore(state.db).create("tester", "clinician", rate_limit=100_000)[0]
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as client:
        client.headers["X-API-Key"] = token
        yield client, state, live, root


def _xray(bundled: Path) -> bytes:
    return (sorted((bundled / "kermany" / "test" / "pneumonia").glob("*.jpg"))[0]).read_bytes()


def _post(client: httpx.Client, path: str, name: str, data: bytes, **kw) -> httpx.Response:
    field = "files" if path.endswith("batch") else "file"
    return client.post(path, files=[(field, (name, data, "application/octet-stream"))], **kw)


def test_parallel_explain_leaves_the_server_up(server, bundled: Path) -> None:
    client, _, _, _ = server
    data = _xray(bundled)
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(lambda _: _post(client, "/v1/predict/explain", "x.jpg", data), range(12))
        )
    assert [r.status_code for r in responses] == [200] * 12, responses[0].text
    assert client.get("/health").json() == {"status": "ok"}


def test_explain_has_its_own_concurrency_limit(trained_home, tmp_path, bundled: Path) -> None:
    home, _ = trained_home
    settings = Settings(home=tmp_path, explain_queue=0, explain_concurrency=1)
    app = create_app(settings, registry=home.registry, mounts=[dashboard_mount])
    token = KeyStore(app.state.radvigil.db).create("t", "clinician", rate_limit=100_000)[0]
    data = _xray(bundled)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as client:
        client.headers["X-API-Key"] = token
        with ThreadPoolExecutor(6) as pool:
            codes = sorted(
                r.status_code
                for r in pool.map(
                    lambda _: _post(client, "/v1/predict/explain", "x.jpg", data), range(6)
                )
            )
    assert codes[0] == 200 and 429 in codes and set(codes) <= {200, 429}


def test_bombs_are_refused_with_413(server) -> None:
    client, _, _, _ = server
    cases = reproductions()
    for name in ("deflate-bomb.dcm", "big-16bit.png"):
        for path in UPLOADS:
            response = _post(client, path, name, cases[name])
            assert response.status_code == 413, (name, path, response.text)
            assert response.json()["code"] == "image_too_large"


def _raw_upload(live, headers: str, body_prefix: bytes) -> tuple[bytes, float]:
    """Send headers and a sliver of a huge body; return the response and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=20) as sock:
        sock.sendall(headers.encode() + b"\r\n" + body_prefix)
        reply = sock.recv(65536)
    return reply, time.monotonic() - started


def test_keyless_giant_upload_is_refused_without_being_read(server) -> None:
    _, _, live, _ = server
    boundary = "x" * 16
    prefix = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + b"\0" * 65536
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n{{extra}}"
    )
    giant, seconds = _raw_upload(live, head.format(length=200_000_000, extra=""), prefix)
    assert giant.startswith(b"HTTP/1.1 413") and seconds < 10, giant[:200]  # over the limit
    keyless, seconds = _raw_upload(live, head.format(length=60_000_000, extra=""), prefix)
    assert keyless.startswith(b"HTTP/1.1 401") and seconds < 10, keyless[:200]  # key first
    wrong_key = head.format(length=60_000_000, extra="X-API-Key: rvk_abc_def\r\n")
    assert _raw_upload(live, wrong_key, prefix)[0].startswith(b"HTTP/1.1 401")
    chunked = head.replace("Content-Length: {length}", "Transfer-Encoding: chunked")
    reply, _ = _raw_upload(live, chunked.format(extra=""), b"10000\r\n" + prefix[:65536])
    assert reply.startswith(b"HTTP/1.1 401")


def test_oversized_body_with_a_key_is_413_from_its_headers(server) -> None:
    client, _, live, _ = server
    token = client.headers["X-API-Key"]
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500000000\r\n"
        f"X-API-Key: {token}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    )
    reply, seconds = _raw_upload(live, head, b"--b\r\n")
    assert reply.startswith(b"HTTP/1.1 413") and seconds < 10


def test_input_triggered_500s_are_4xx_on_every_upload_route(server) -> None:
    client, _, _, _ = server
    for name, data in reproductions().items():
        for path in UPLOADS:
            response = _post(client, path, name, data)
            if name == "long-view.dcm":  # a name typed into ViewPosition: scored, stored "other"
                assert response.status_code == 200, response.text
                continue
            assert 400 <= response.status_code < 500, (name, path, response.text)
            assert set(response.json()) == {"code", "message"}
    deep = "[" * 50_000 + "]" * 50_000
    nested = client.post(
        "/v1/predict", files={"file": ("a.png", b"x", "image/png")}, data={"metadata": deep}
    )
    assert nested.status_code == 422 and nested.json()["code"] == "invalid_metadata"
    assert client.get("/health").status_code == 200


def test_batch_with_one_bad_image_stores_nothing(server, bundled: Path) -> None:
    client, state, _, _ = server
    state.writer.flush()
    before = state.predictions.count()
    good = _xray(bundled)
    bad = reproductions()["strip-1x5000.png"]
    files = [("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(3)]
    files.insert(1, ("files", ("strip.png", bad, "image/png")))
    response = client.post("/v1/predict/batch", files=files)
    assert response.status_code == 422 and "files[1]" in response.json()["message"]
    state.writer.flush()
    assert state.predictions.count() == before


def test_formats_are_decided_by_magic_bytes(server, bundled: Path) -> None:
    client, _, _, _ = server
    gray = np.asarray(PILImage.open(io.BytesIO(_xray(bundled))).convert("L"))
    for fmt in ("GIF", "TIFF", "BMP", "WEBP"):
        buffer = io.BytesIO()
        PILImage.fromarray(gray).save(buffer, format=fmt)
        response = client.post(
            "/v1/predict", files={"file": ("x.png", buffer.getvalue(), "image/png")}
        )
        assert response.status_code == 415, (fmt, response.text)
    eps = client.post("/v1/predict", files={"file": ("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n")})
    assert eps.status_code == 415
    as_octets = _post(client, "/v1/predict", "x", _xray(bundled))
    assert as_octets.status_code == 200  # the content type is advisory


def test_what_is_not_a_chest_radiograph_is_refused_not_scored(server, bundled: Path) -> None:
    client, _, _, _ = server
    rng = np.random.default_rng(1)
    photo = png(rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8))
    knee = dicom((rng.random((256, 256)) * 4000).astype(np.uint16), BodyPartExamined="EXTREMITY")
    cases = {
        "photo.png": (photo, "colour image"),
        "one-pixel.png": (png(np.zeros((1, 1), dtype=np.uint8)), "too small"),
        "black.png": (png(np.zeros((512, 512), dtype=np.uint8)), "blank"),
        "knee.dcm": (knee, "not a chest"),
    }
    for name, (data, why) in cases.items():
        response = _post(client, "/v1/predict", name, data)
        assert response.status_code == 422, (name, response.text)
        body = response.json()
        assert body["code"] == "not_a_chest_radiograph" and why in body["message"], body
        assert "findings" not in body and "probabilities" not in body


def test_pydicom_test_files_through_every_upload_endpoint(server) -> None:
    client, _, _, _ = server
    corpus = list(pydicom_corpus())
    statuses: dict[int, int] = {}
    for name, data in corpus:
        for path in ("/v1/predict", "/v1/predict/explain"):
            code = _post(client, path, name, data).status_code
            statuses[code] = statuses.get(code, 0) + 1
            assert code < 500, (name, path)
    for start in range(0, len(corpus), 16):
        chunk = corpus[start : start + 16]
        files = [("files", (n, d, "application/dicom")) for n, d in chunk]
        assert client.post("/v1/predict/batch", files=files).status_code < 500
    assert client.get("/health").status_code == 200
    assert set(statuses) <= {200, 400, 413, 415, 422}, statuses


PHI = ("ZQXDOE", "MRN998877", "1970XX01", "ZQXSERIES", "ZQXPRIVATE", "ZQXFILENAME")


def _phi_dicom(bundled: Path) -> bytes:
    gray = np.asarray(PILImage.open(io.BytesIO(_xray(bundled))).convert("L"), dtype=np.uint16)
    data = dicom(
        gray * 16,
        PatientName="ZQXDOE^JANE",
        PatientID="MRN998877",
        PatientBirthDate="19700101",
        ViewPosition="PA",
        SeriesDescription="ZQXSERIES ZQXDOE^JANE MRN998877",
        InstitutionName="ZQXDOE^JANE hospital",
        Manufacturer="ZQXDOE^JANE",
        BodyPartExamined="CHEST",
        AccessionNumber="MRN998877",
    )
    # a name typed into ViewPosition, and a date pydicom will complain about (and quote)
    data = with_raw_tag(data, b"CS\x02\x00PA", b"CS\x16\x00ZQXDOE^JANE  MRN998877")
    return data.replace(b"DA\x08\x0019700101", b"DA\x08\x001970XX01")


def test_phi_leaves_no_trace(server, bundled: Path, caplog, capfd) -> None:
    client, state, _, root = server
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_phi_dicom(bundled)))
    ds.add_new((0x0029, 0x0010), "LO", "ZQXPRIVATE creator")
    ds.add_new((0x0029, 0x1001), "LO", "ZQXPRIVATE ZQXDOE^JANE MRN998877")
    buffer = io.BytesIO()
    ds.save_as(buffer)
    data = buffer.getvalue()
    with caplog.at_level(logging.DEBUG):
        for path in UPLOADS:
            response = _post(client, path, "ZQXFILENAME_ZQXDOE^JANE.dcm", data)
            assert response.status_code == 200, response.text
            body = response.json()
            prediction = body.get("prediction") or body.get("predictions", [body])[0]
            stored = client.get(f"/v1/predictions/{prediction['request_id']}")
            assert "ZQX" not in stored.text and "MRN" not in stored.text
        bad = data.replace(b"CS\x16\x00ZQX", b"CS\x16\x00\xff\xfeZ")  # malformed text value
        _post(client, "/v1/predict", "ZQXFILENAME.dcm", bad)
        state.writer.flush()
        review = client.get("/v1/review", params={"limit": 500})
    output = capfd.readouterr()
    texts = [caplog.text, output.out, output.err, review.text]
    for file in root.rglob("*"):
        if file.is_file():
            texts.append(file.read_bytes().decode("latin-1"))
    for secret in PHI:
        for text in texts:
            assert secret not in text, secret
    views = {r.view_position for r in state.predictions.list(limit=50)}
    assert views <= {None, "other", "PA", "AP"}, views
    assert json.dumps(sorted(map(str, views)))  # plain values only


def test_dashboard_sessions_are_server_side_and_end_at_sign_out(server) -> None:
    client, state, live, _ = server
    token = client.headers["X-API-Key"]
    with httpx.Client(base_url=live.url, timeout=60) as browser:
        browser.get("/dashboard/login")
        login_csrf = browser.cookies["radvigil_login_csrf"]
        signed = browser.post("/dashboard/login", data={"csrf": login_csrf, "api_key": token})
        assert signed.status_code in (200, 303)
        session_id = browser.cookies["radvigil_session"]
        assert token not in session_id and state.sessions.get(session_id).caller.name == "tester"
        assert browser.get("/dashboard/models", follow_redirects=False).status_code == 200
        from radvigil.dashboard.session import csrf_for

        out = browser.post("/dashboard/logout", data={"csrf": csrf_for(session_id)})
        assert out.status_code in (200, 303)
        assert state.sessions.get(session_id) is None
    with httpx.Client(base_url=live.url, cookies={"radvigil_session": session_id}) as stale:
        assert stale.get("/dashboard/models", follow_redirects=False).status_code in (303, 307)
    failed = state.audit.list(action="dashboard_sign_in_failed", limit=5)
    with httpx.Client(base_url=live.url, timeout=60) as browser:
        browser.get("/dashboard/login")
        csrf = browser.cookies["radvigil_login_csrf"]
        browser.post("/dashboard/login", data={"csrf": csrf, "api_key": "rvk_bad_key"})
    assert len(state.audit.list(action="dashboard_sign_in_failed", limit=5)) == len(failed) + 1


def test_failed_keys_and_403s_are_audited_and_rate_limited_per_address(server) -> None:
    _, state, live, _ = server
    with httpx.Client(base_url=live.url, timeout=60) as anonymous:
        codes = [
            anonymous.get("/v1/model", headers={"X-API-Key": "rvk_abc_wrong"}).status_code
            for _ in range(40)
        ]
    assert codes[0] == 401 and 429 in codes  # 30 per minute per address by default
    assert state.audit.list(action="auth.failed", limit=1)
    auditor = KeyStore(state.db).create("auditor-403", "auditor")[0]
    with httpx.Client(base_url=live.url, timeout=60) as client:
        denied = client.post(
            "/v1/predict", headers={"X-API-Key": auditor}, files={"file": ("a", b"x")}
        )
    assert denied.status_code == 403
    assert state.audit.list(action="auth.forbidden", actor="auditor-403", limit=1)
    assert state.audit.list(action="key.create", object_id="auditor-403", limit=1)
