"""The inference service on a real uvicorn server, with real images, a real registry and DB."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from radvigil.config import Settings
from radvigil.dashboard.site import mount as dashboard_mount
from radvigil.service import assessment
from radvigil.service.app import create_app
from radvigil.store import AuditLog, Database, KeyStore, PredictionStore
from tests.helpers import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def service(trained_home, tmp_path_factory):
    home, _ = trained_home
    root = tmp_path_factory.mktemp("service-home")
    settings = Settings(home=root, batch_max_wait_ms=2.0)
    app = create_app(settings, registry=home.registry, mounts=[dashboard_mount])
    keys = KeyStore(app.state.radvigil.db)
    tokens = {
        role: keys.create(f"{role}-key", role)[0]
        for role in ("clinician", "admin", "auditor", "service", "metrics")
    }
    tokens["slow"] = keys.create("slow-key", "clinician", rate_limit=2)[0]
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client, tokens, app.state.radvigil


def _h(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def _png_bytes(bundled: Path) -> bytes:
    jpg = sorted((bundled / "kermany" / "test" / "pneumonia").glob("*.jpg"))[0]
    buffer = io.BytesIO()
    PILImage.open(jpg).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_needs_no_key_but_everything_else_does(service) -> None:
    client, tokens, _ = service
    assert client.get("/health").json() == {"status": "ok"}
    for path in ("/ready", "/v1/model", "/metrics", "/v1/predictions/abc"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json()["code"] == "unauthenticated"
    assert client.get("/ready", headers=_h(tokens["service"])).json()["ready"] is True


def test_the_metrics_role_reads_metrics_and_readiness_only(service) -> None:
    """The Prometheus scrape / probe key: /metrics and /ready, never the audit log or data."""
    client, tokens, _ = service
    metrics = _h(tokens["metrics"])
    assert client.get("/metrics", headers=metrics).status_code == 200
    assert client.get("/ready", headers=metrics).status_code == 200
    for path in ("/v1/audit", "/v1/model", "/v1/predictions/abc"):
        assert client.get(path, headers=metrics).status_code == 403, path
    assert client.get("/v1/audit", headers=_h(tokens["auditor"])).status_code == 200


def test_the_audit_log_pages_by_key(service) -> None:
    """``/v1/audit?after=ID``: pages in a row are the newest records, none twice or missing."""
    client, tokens, state = service
    for i in range(7):
        state.audit.append(actor="pager", action="page.test", object_type="test", object_id=str(i))
    auditor = _h(tokens["auditor"])
    seen, after = [], None
    while True:
        params = {"action": "page.test", "limit": 3, **({"after": after} if after else {})}
        response = client.get("/v1/audit", headers=auditor, params=params)
        seen += [e["object_id"] for e in response.json()]
        after = response.headers.get("X-Next-After")
        if after is None:
            break
    assert seen == [str(i) for i in reversed(range(7))]
    with httpx.Client(base_url=client.base_url, timeout=60) as browser:  # sign in like a person
        browser.get("/dashboard/login")
        csrf = browser.cookies["radvigil_login_csrf"]
        browser.post("/dashboard/login", data={"csrf": csrf, "api_key": tokens["auditor"]})
        page = browser.get("/dashboard/audit", params={"action": "page.test", "limit": 3})
    assert page.status_code == 200, page.text
    assert 'id="audit-next"' in page.text and "after=" in page.text


def test_predict_png_returns_documented_fields(service, bundled: Path) -> None:
    client, tokens, state = service
    response = client.post(
        "/v1/predict",
        headers=_h(tokens["clinician"]),
        files={"file": ("case.png", _png_bytes(bundled), "image/png")},
        data={"metadata": '{"site": "ward-3", "view": "AP"}'},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["probabilities"]) == {"normal", "pneumonia"}
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    assert body["predicted_class"] in ("normal", "pneumonia")
    assert body["model_version"] == "1" and body["thresholds"]["pneumonia"] > 0
    assert "reviewed by a qualified clinician" in body["warning"]
    assert body["latency_ms"] > 0 and body["request_id"]
    state.writer.flush()
    stored = client.get(
        f"/v1/predictions/{body['request_id']}", headers=_h(tokens["auditor"])
    ).json()
    assert stored["site"] == "ward-3" and stored["predicted_class"] == body["predicted_class"]
    assert "review_image" not in stored and "embedding" not in stored


def test_guards_flag_and_route_inverted_and_cropped_studies(service, bundled: Path) -> None:
    client, tokens, _ = service
    jpg = sorted((bundled / "kermany" / "test" / "normal").glob("*.jpg"))[0]
    pixels = np.asarray(PILImage.open(jpg).convert("L"))
    h, w = pixels.shape
    changed = {
        "inverted_polarity": 255 - pixels,
        "field_of_view": np.asarray(
            PILImage.fromarray(pixels[h // 5 : -h // 5, w // 5 : -w // 5]).resize((w, h))
        ),
    }
    for guard, image in changed.items():
        buffer = io.BytesIO()
        PILImage.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
        response = client.post(
            "/v1/predict",
            headers=_h(tokens["clinician"]),
            files={"file": ("case.png", buffer.getvalue(), "image/png")},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert guard in body["flags"]["guards"], body["flags"]
        assert body["routed_to_review"] is True and body["flags"]["drifter"] is True


def test_predict_dicom(service, shared_data: Path) -> None:
    client, tokens, _ = service
    data = (shared_data / "dicom" / "RG1_UNCI.dcm").read_bytes()
    response = client.post(
        "/v1/predict",
        headers=_h(tokens["clinician"]),
        files={"file": ("RG1_UNCI.dcm", data, "application/dicom")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["predicted_class"] in ("normal", "pneumonia")


def test_explain_heatmap_matches_input_size(service, shared_data: Path) -> None:
    client, tokens, _ = service
    jpg = sorted((shared_data / "cxr" / "hannover_covid").rglob("*.jpg"))[0]
    width, height = PILImage.open(jpg).size
    response = client.post(
        "/v1/predict/explain",
        headers=_h(tokens["clinician"]),
        files={"file": (jpg.name, jpg.read_bytes(), "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    heatmap = PILImage.open(io.BytesIO(base64.b64decode(body["heatmap_png_base64"])))
    assert heatmap.size == (width, height) == (body["width"], body["height"])
    assert not np.isnan(np.asarray(heatmap, dtype=float)).any()


def test_batch_of_16_works_and_17_is_refused(service, bundled: Path) -> None:
    client, tokens, _ = service
    files = sorted((bundled / "kermany" / "test" / "normal").glob("*.jpg"))[:17]
    payload = [("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
    ok = client.post("/v1/predict/batch", headers=_h(tokens["service"]), files=payload[:16])
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["predictions"]) == 16
    refused = client.post("/v1/predict/batch", headers=_h(tokens["service"]), files=payload)
    assert refused.status_code == 413 and refused.json()["code"] == "batch_too_large"


def _huge_png_header() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00" * 64
    )


def _bad_corpus(bundled: Path, shared_data: Path) -> list[tuple[str, bytes, str]]:
    import pydicom
    from pydicom.data import get_testdata_file

    jpg = sorted((bundled / "kermany" / "test" / "normal").glob("*.jpg"))[0].read_bytes()
    colour = io.BytesIO()
    rgb = np.asarray(PILImage.open(io.BytesIO(jpg)).convert("RGB")).copy()
    rgb[..., 0] = 255 - rgb[..., 0]
    PILImage.fromarray(rgb).save(colour, format="PNG")
    small = pydicom.dcmread(shared_data / "dicom" / "RG1_chest_small_512.dcm")
    small.NumberOfFrames = 2
    small.PixelData = small.PixelData * 2
    multi = io.BytesIO()
    small.save_as(multi)
    return [
        ("truncated.jpg", jpg[: len(jpg) // 3], "image/jpeg"),
        ("empty.png", b"", "image/png"),
        ("random.png", np.random.default_rng(0).bytes(4096), "image/png"),
        ("huge.png", _huge_png_header(), "image/png"),
        ("ct.dcm", Path(get_testdata_file("CT_small.dcm")).read_bytes(), "application/dicom"),
        ("multi.dcm", multi.getvalue(), "application/dicom"),
        ("notes.txt", b"hello", "text/plain"),
    ], colour.getvalue()


def test_bad_inputs_get_4xx_json_and_server_stays_up(service, bundled, shared_data) -> None:
    client, tokens, _ = service
    corpus, colour = _bad_corpus(bundled, shared_data)
    for name, data, content_type in corpus:
        response = client.post(
            "/v1/predict",
            headers=_h(tokens["clinician"]),
            files={"file": (name, data, content_type)},
        )
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        body = response.json()
        assert set(body) == {"code", "message"} and body["message"], name
    missing = client.post("/v1/predict", headers=_h(tokens["clinician"]))
    assert missing.status_code == 422 and missing.json()["code"] == "invalid_request"
    bad_meta = client.post(
        "/v1/predict",
        headers=_h(tokens["clinician"]),
        files={"file": ("a.jpg", corpus[0][1], "image/jpeg")},
        data={"metadata": "{not json"},
    )
    assert bad_meta.status_code == 422
    refused = client.post(
        "/v1/predict",
        headers=_h(tokens["clinician"]),
        files={"file": ("photo.png", colour, "image/png")},
    )
    assert refused.status_code == 422, refused.text  # refused, never scored: no findings
    assert refused.json()["code"] == "not_a_chest_radiograph"
    assert "colour image" in refused.json()["message"]
    assert client.get("/health").status_code == 200


def test_raw_image_body_is_accepted_like_multipart(service, bundled, shared_data) -> None:
    client, tokens, state = service
    png = _png_bytes(bundled)
    headers = {**_h(tokens["clinician"]), "Content-Type": "image/png"}
    meta = {"X-Study-Metadata": '{"site": "ward-9"}'}
    raw = client.post("/v1/predict", headers={**headers, **meta}, content=png)
    assert raw.status_code == 200, raw.text
    multipart = client.post(
        "/v1/predict", headers=_h(tokens["clinician"]), files={"file": ("a.png", png, "image/png")}
    )
    assert raw.json()["probabilities"] == multipart.json()["probabilities"]
    dicom = (shared_data / "dicom" / "RG1_UNCI.dcm").read_bytes()
    as_dicom = {**_h(tokens["clinician"]), "Content-Type": "application/dicom"}
    assert client.post("/v1/predict", headers=as_dicom, content=dicom).status_code == 200
    text = {**_h(tokens["clinician"]), "Content-Type": "text/plain"}
    refused = client.post("/v1/predict", headers=text, content=b"hello")
    assert refused.status_code == 415 and refused.json()["code"] == "unsupported_media_type"
    garbage = client.post("/v1/predict", headers=headers, content=b"not a png")
    assert garbage.status_code == 415  # judged by magic bytes, not by the content type
    state.writer.flush()
    stored = client.get(
        f"/v1/predictions/{raw.json()['request_id']}", headers=_h(tokens["auditor"])
    ).json()
    assert stored["site"] == "ward-9"


def test_no_review_png_is_encoded_when_review_images_are_not_stored(service, bundled) -> None:
    """A drifter (a polarity-inverted X-ray) is routed to review, but with
    ``store_review_images`` off (the default) its PNG is never encoded: counted, not timed.
    (A colour photo is now refused by the input contract, so it no longer reaches review.)"""
    client, tokens, state = service
    assert state.settings.store_review_images is False
    jpg = sorted((bundled / "kermany" / "test" / "normal").glob("*.jpg"))[0]
    inverted = io.BytesIO()
    PILImage.fromarray(255 - np.asarray(PILImage.open(jpg).convert("L"))).save(inverted, "PNG")
    before = assessment.review_pngs_encoded
    flagged = client.post(
        "/v1/predict",
        headers=_h(tokens["clinician"]),
        files={"file": ("case.png", inverted.getvalue(), "image/png")},
    )
    assert flagged.status_code == 200 and flagged.json()["routed_to_review"] is True
    assert assessment.review_pngs_encoded == before


def test_roles_and_rate_limits(service, bundled: Path) -> None:
    client, tokens, _ = service
    file = {"file": ("a.png", _png_bytes(bundled), "image/png")}
    forbidden = client.post("/v1/predict", headers=_h(tokens["auditor"]), files=file)
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    wrong = client.post("/v1/predict", headers=_h("rvk_nothing_here"), files=file)
    assert wrong.status_code == 401
    codes = [
        client.post("/v1/predict", headers=_h(tokens["slow"]), files=file).status_code
        for _ in range(3)
    ]
    assert codes[:2] == [200, 200] and codes[2] == 429
    limited = client.post("/v1/predict", headers=_h(tokens["slow"]), files=file)
    assert int(limited.headers["Retry-After"]) >= 1


def test_metrics_and_audit(service) -> None:
    client, tokens, state = service
    text = client.get("/metrics", headers=_h(tokens["service"])).text
    assert "radvigil_request_latency_seconds_bucket" in text
    assert 'radvigil_model_info{alias="champion",name="chest-pneumonia",version="1"} 1.0' in text
    state.writer.flush()
    db = Database(state.db.url)
    assert PredictionStore(db).count() >= 20
    assert AuditLog(db).verify().ok
    actions = {e.action for e in AuditLog(db).list(limit=500)}
    assert "predict" in actions


def test_openapi_docs(service) -> None:
    client, _, _ = service
    spec = client.get("/openapi.json").json()
    assert "/v1/predict" in spec["paths"] and "/v1/predict/explain" in spec["paths"]
    assert client.get("/docs").status_code == 200
    time.sleep(0)
