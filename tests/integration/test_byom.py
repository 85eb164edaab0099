"""Bring your own model end to end (issue #28): a classifier built without radvigil code is
imported with a spec and the bundled validation split, then goes through the real uvicorn
server and the real MLflow store like any version: gate against radvigil's champion, shadow,
canary, promote, predictions, explanation (occlusion), monitors flagging a shifted batch,
reviewed labels, rollback; then the vendor's next version is imported and gated against it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image as PILImage
from typer.testing import CliRunner

from radvigil.config import Settings
from radvigil.data.io import read_image
from radvigil.data.shifts import apply_shift, get_shift
from radvigil.errors import ModelError
from radvigil.evaluation import criteria_from_dict
from radvigil.loop.actions import version_recorder
from radvigil.loop.model_import import ImportRequest, import_model
from radvigil.loop.retrain import retrain
from radvigil.loop.rollout import Rollout
from radvigil.loop.site_calibration import recalibrate
from radvigil.loop.training import run_training
from radvigil.loop.workspace import Workspace
from radvigil.model.byom.spec import ModelSpec
from radvigil.registry import Tag
from radvigil.service.app import create_app
from radvigil.store import AuditLog, KeyStore
from tests.helpers import LiveServer, make_home, tiny_config
from tests.integration import byom_outside

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "chest-pneumonia"
LENIENT = {
    "n_resamples": 200,
    "gates": [{"kind": "non_inferiority", "metrics": ["auc"], "margin": 0.5}],
}


def _import(home, path: Path, spec: dict, against: str, tmp: Path, record=None):
    return import_model(
        ImportRequest(
            file=path,
            spec=ModelSpec.model_validate(spec),
            data_ref=home.data_version,
            importer="tester",
            source="ACME Imaging, model X",
            licence="proprietary, evaluation licence",
            intended_use="adult and paediatric CXR pneumonia triage",
        ),
        home.catalog,
        home.registry,
        max_bytes=64 << 20,
        extractor_cache=tmp / "extractors",
        reports_dir=tmp / "reports",
        criteria=criteria_from_dict(LENIENT),
        against=against,
        record=record,
    )


@pytest.fixture(scope="module")
def byom(tmp_path_factory, bundled: Path):
    """radvigil's own champion (tiny, trained), a live server, and the outside model exported."""
    root = tmp_path_factory.mktemp("byom")
    home = make_home(root / "home")
    ours = run_training(tiny_config(), home.data_version, home.catalog, home.registry)
    home.registry.set_alias(NAME, "champion", ours.version, "test", "radvigil's own")
    outside = byom_outside.train(bundled, 0, epochs=3, n=300)
    path = byom_outside.export(outside, root / "vendor-v1.onnx")
    (root / "monitoring.yaml").write_text("windows: {size: 50}\n")
    settings = Settings(
        home=root / "home",
        store_review_images=True,
        model_poll_seconds=0.5,
        monitor_interval_seconds=0,
        monitoring_config=root / "monitoring.yaml",
        batch_max_wait_ms=2.0,
    )
    app = create_app(settings, registry=home.registry)
    keys = KeyStore(app.state.radvigil.db)
    tokens = {
        r: keys.create(f"{r}-key", r, rate_limit=10_000)[0]
        for r in ("admin", "clinician", "service")
    }
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        yield home, client, tokens, app.state.radvigil, outside, path, root, ours


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _post(client, token: str, payloads: list[bytes]) -> list[dict]:
    out = []
    for start in range(0, len(payloads), 16):
        files = [
            ("files", (f"s{start + i}.png", data, "image/png"))
            for i, data in enumerate(payloads[start : start + 16])
        ]
        response = client.post("/v1/predict/batch", headers={"X-API-Key": token}, files=files)
        assert response.status_code == 200, response.text
        out += response.json()["predictions"]
    return out


def test_outside_model_through_the_whole_loop(byom, bundled: Path) -> None:
    home, client, tokens, state, outside, path, root, ours = byom
    admin, clinician = {"X-API-Key": tokens["admin"]}, {"X-API-Key": tokens["clinician"]}
    record = version_recorder(state.audit, NAME)

    # import: checked, calibrated, profiled, registered with lineage, gated vs radvigil's champion
    first = _import(home, path, byom_outside.SPEC, "champion", root, record)
    assert first.verdict is not None and first.verdict.passed, first.verdict.summary()
    assert {r.gate for r in first.verdict.rows if r.status != "skipped"} == {"non_inferiority"}
    card = home.registry.load(f"{NAME}/{first.version}").card
    assert card.input.size == byom_outside.SIZE != ours.card.input.size
    lineage = card.imported
    assert lineage is not None
    assert lineage.source == "ACME Imaging, model X" and len(lineage.file_sha256) == 64
    assert lineage.validation_data_version == home.data_version
    assert lineage.embedding_from == "the model's own tensor 'features'"
    assert any("declared source" in line for line in lineage.not_verified)
    assert card.embedding_dim == 64 and card.metrics["onnx_parity_max_abs_diff"] < 1e-4
    tags = home.registry.resolve(f"{NAME}/{first.version}").tags
    assert '"passed": true' in tags[Tag.GATE] and tags[Tag.IMPORTED]
    assert first.report.is_file()

    # rollout like any challenger: shadow, canary, promote
    rollout = Rollout(home.registry, NAME, record)
    rollout.propose(first.version, "tester", "vendor model, gates passed")
    shadow = client.post("/v1/admin/rollout/shadow", headers=admin, json={"reason": "compare"})
    assert shadow.status_code == 200, shadow.text
    test_normals = sorted((bundled / "kermany" / "test" / "normal").glob("*.jpg"))[:16]
    plain = [_png(read_image(p).pixels) for p in test_normals]
    _post(client, tokens["service"], plain[:8])
    state.writer.flush()
    canary = client.post(
        "/v1/admin/rollout/canary", headers=admin, json={"reason": "half", "share": 0.5}
    )
    assert canary.status_code == 200, canary.text
    served = {r["served_by"] for r in _post(client, tokens["service"], plain)}
    assert served == {"champion", "challenger"}
    promoted = client.post(
        "/v1/admin/rollout/promote", headers=admin, json={"reason": "gates passed"}
    )
    assert promoted.status_code == 200, promoted.text
    model = client.get("/v1/model", headers=admin).json()["champion"]
    assert model["version"] == first.version

    # predictions and an explanation from the imported champion (occlusion, no torch weights)
    paths = sorted((bundled / "kermany" / "train").glob("*/*.jpg"))[:100]
    clean = _post(client, tokens["service"], [_png(read_image(p).pixels) for p in paths[:4]])
    assert {r["model_version"] for r in clean} == {first.version}
    jpg = test_normals[0]
    explained = client.post(
        "/v1/predict/explain",
        headers=clinician,
        files={"file": (jpg.name, jpg.read_bytes(), "image/jpeg")},
    )
    assert explained.status_code == 200, explained.text
    heat = PILImage.open(io.BytesIO(base64.b64decode(explained.json()["heatmap_png_base64"])))
    assert heat.size == PILImage.open(jpg).size

    # a shifted batch (brighter scanner) is flagged by the monitors on the imported profile
    shift = get_shift("brightness", factor=1.3)
    shifted = [_png(apply_shift(read_image(p).pixels, shift, seed=i)) for i, p in enumerate(paths)]
    _post(client, tokens["service"], shifted)
    state.writer.flush()
    run = client.post("/v1/monitoring/run", headers=admin)
    assert run.status_code == 200, run.text
    drifted = {r["name"] for w in run.json()["windows"] for r in w["results"] if r["drift"]}
    assert {"image_stats", "mmd"} <= drifted, drifted

    # reviewed labels on the imported champion's queue
    queue = client.get("/v1/review", headers=clinician, params={"limit": 20}).json()
    assert queue["total"] > 0
    item = queue["items"][0]
    label = client.post(
        "/v1/feedback",
        headers=clinician,
        json={"prediction_id": item["request_id"], "label": "normal"},
    )
    assert label.status_code == 201, label.text

    # retraining is refused clearly; site calibration works on the graph
    champion = home.registry.load(f"{NAME}@champion")
    with pytest.raises(ModelError, match="imported model: radvigil has neither"):
        retrain(
            champion,
            Workspace(
                home.catalog,
                home.registry,
                state.predictions,
                state.feedback,
                criteria_from_dict(LENIENT),
                root / "reports",
                record,
                "tester",
            ),
        )
    with pytest.raises(ModelError, match="site thresholds are fitted only for models radvigil"):
        recalibrate(champion, home.data_version, home.catalog, home.registry, site="north")
    recalibrated = recalibrate(champion, home.data_version, home.catalog, home.registry)
    assert recalibrated.card.imported is not None
    assert recalibrated.card.imported.file_sha256 == lineage.file_sha256
    with pytest.raises(ModelError, match="imported versions are served in fp32 only"):
        home.registry.load(f"{NAME}/{first.version}").at_precision("int8")

    # rollback to radvigil's own champion
    back = client.post("/v1/admin/rollout/rollback", headers=admin, json={"reason": "regression"})
    assert back.status_code == 200, back.text
    assert client.get("/v1/model", headers=admin).json()["champion"]["version"] == ours.version

    # the vendor's next version, gated against the first imported one
    updated = byom_outside.train(bundled, 1, epochs=1, n=200, model=outside)
    second = _import(
        home,
        byom_outside.export(updated, root / "vendor-v2.onnx"),
        byom_outside.SPEC,
        f"{NAME}/{first.version}",
        root,
        record,
    )
    assert second.verdict is not None
    compared = {row.gate for row in second.verdict.rows if row.status != "skipped"}
    assert "non_inferiority" in compared, second.verdict.rows
    assert second.card.imported.file_sha256 != lineage.file_sha256

    actions = {e.action for e in AuditLog(state.db).list(limit=1000)}
    assert {"import", "propose", "rollout_shadow", "promote", "rollback"} <= actions
    assert AuditLog(state.db).verify().ok


def test_bad_model_leaves_no_version(byom, tmp_path: Path) -> None:
    home, *_ = byom
    before = len(home.registry.versions(NAME))
    spec = yaml.safe_load(yaml.safe_dump(byom_outside.SPEC))
    spec["output"]["kind"] = "probabilities"  # the graph's scores are logits
    with pytest.raises(ModelError, match="declared as probabilities but is not"):
        _import(home, byom[5], spec, "none", tmp_path)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(byom[5].read_bytes()[:5000])
    with pytest.raises(ModelError):
        _import(home, truncated, byom_outside.SPEC, "none", tmp_path)
    assert len(home.registry.versions(NAME)) == before


def test_cli_import_refuses_a_spec_naming_a_missing_node(byom, tmp_path, monkeypatch) -> None:
    from radvigil.cli import app
    from radvigil.config import reset_settings

    home, *_ = byom
    monkeypatch.setenv("RADVIGIL_HOME", str(home.root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", home.registry.tracking_uri)
    reset_settings()
    spec = {**byom_outside.SPEC, "embedding": {"node": "no_such_node"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = len(home.registry.versions(NAME))
    args = ["models", "import", str(byom[5]), "--spec", str(tmp_path / "spec.yaml")]
    result = CliRunner().invoke(app, [*args, "--data", home.data_version])
    reset_settings()
    assert result.exit_code != 0
    assert "embedding node 'no_such_node' does not exist" in result.output
    assert len(home.registry.versions(NAME)) == before
