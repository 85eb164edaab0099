"""Bring your own model: the spec, the graph checks and the wrapped graph, on real bundled images.

Each bad model of issue #28 is refused with a clear ModelError before anything is registered
(``prepare`` and ``read_vendor_file`` run before the MLflow run exists). Graphs are tiny ONNX
classifiers built with onnx.helper (tests/unit/byom_graphs.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from radvigil.data.manifest import DatasetVersion
from radvigil.errors import ConfigError, ModelError
from radvigil.model.byom.checks import run_vendor, vendor_batch
from radvigil.model.byom.prepare import prepare, read_vendor_file
from radvigil.model.byom.saliency import occlusion, occlusion_batch
from radvigil.model.byom.spec import ModelSpec, check_graph, load_spec
from radvigil.model.byom.wrap import set_temperature
from radvigil.model.calibrate import softmax
from radvigil.model.dataset import ArraySet, load_split
from radvigil.model.engine import OnnxEngine
from radvigil.model.preprocess import normalise
from radvigil.task import load_task
from tests.helpers import small_card
from tests.unit.byom_graphs import spec_dict, tiny_classifier

LIMIT = 1 << 20


def _no_extractor(size: int):
    raise AssertionError("these graphs name their own embedding; no extractor is needed")


@pytest.fixture(scope="module")
def val_set(bundled_version: DatasetVersion) -> ArraySet:
    """40 real validation X-rays at 48 px (both classes)."""
    return load_split(bundled_version, "val", load_task("chest-pneumonia"), 48, limit=40)


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "vendor.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _prepare(model: onnx.ModelProto, spec: dict, val_set: ArraySet, tmp_path: Path, **kw):
    vendor = read_vendor_file(_save(model, tmp_path), LIMIT)
    return prepare(
        vendor,
        ModelSpec.model_validate(spec),
        val_set,
        keep_vendor_thresholds=kw.get("keep", False),
        extractor=_no_extractor,
    )


def test_spec_loads_from_yaml_and_refuses_a_task_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_dict()))
    assert load_spec(path).input.mean == [0.485, 0.456, 0.406]
    wrong = ModelSpec.model_validate(spec_dict(classes=["pneumonia", "normal"]))
    with pytest.raises(ConfigError, match="do not match task 'chest-pneumonia'"):
        wrong.resolved_task()
    path.write_text(yaml.safe_dump(spec_dict(input={"mean": [0.1, 0.2]})))
    with pytest.raises(ConfigError, match="mean needs 1 or 3 values"):
        load_spec(path)


def test_a_good_graph_is_wrapped_with_the_spec_preprocessing(val_set, tmp_path) -> None:
    prepared = _prepare(tiny_classifier(), spec_dict(), val_set, tmp_path)
    x = normalise(val_set.images)[:, None]
    probs, embedding = OnnxEngine(prepared.graph.SerializeToString()).run(x)
    spec = ModelSpec.model_validate(spec_dict())
    check = check_graph(tiny_classifier(), spec)
    raw = run_vendor(tiny_classifier(), spec, check, list(val_set.images))
    expected = softmax(raw.scores.astype(np.float64), prepared.temperature)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(embedding, raw.embedding, atol=1e-5)
    assert embedding.shape == (40, 3)
    assert prepared.thresholds_from.startswith("fitted")
    assert 0 < prepared.thresholds["pneumonia"] < 1
    assert prepared.metrics["onnx_parity_max_abs_diff"] < 1e-5


def test_nhwc_single_channel_probabilities_graph_is_served_alike(val_set, tmp_path) -> None:
    model = tiny_classifier(channels=1, layout="NHWC", kind="probabilities")
    spec = spec_dict(
        input={"channels": 1, "layout": "NHWC", "mean": [0.5], "std": [0.25]},
        output={"kind": "probabilities"},
        vendor_thresholds={"pneumonia": 0.3},
    )
    prepared = _prepare(model, spec, val_set, tmp_path, keep=True)
    assert prepared.temperature == 1.0 and prepared.thresholds == {"pneumonia": 0.3}
    sane = ModelSpec.model_validate(spec)
    batch = vendor_batch(list(val_set.images[:4]), sane, check_graph(model, sane))
    assert batch.shape == (4, 48, 48, 1)


def test_temperature_is_a_rewritable_initializer(val_set, tmp_path) -> None:
    prepared = _prepare(tiny_classifier(), spec_dict(), val_set, tmp_path)
    x = normalise(val_set.images[:8])[:, None]
    hot = OnnxEngine(set_temperature(prepared.graph, 50.0).SerializeToString()).run(x)[0]
    assert np.abs(hot - 0.5).max() < 0.05  # a huge temperature flattens every row


def test_non_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(ModelError, match="is not an ONNX model"):
        read_vendor_file(path, LIMIT)


def test_truncated_onnx_is_refused(tmp_path: Path) -> None:
    raw = tiny_classifier().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelError, match=r"not an ONNX model|fails onnx\.checker"):
        read_vendor_file(path, LIMIT)


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = _save(tiny_classifier(), tmp_path)
    with pytest.raises(ModelError, match="over the import limit"):
        read_vendor_file(path, 100)


def test_input_not_matching_the_spec_is_refused(val_set, tmp_path) -> None:
    with pytest.raises(ModelError, match="input 'image' is not in the graph"):
        _prepare(tiny_classifier(), spec_dict(input={"name": "image"}), val_set, tmp_path)
    with pytest.raises(ModelError, match="takes 3 channels"):
        _prepare(
            tiny_classifier(),
            spec_dict(input={"channels": 1, "mean": [0.5], "std": [0.2]}),
            val_set,
            tmp_path,
        )
    with pytest.raises(ModelError, match="input height is 48, the spec says 64"):
        _prepare(tiny_classifier(), spec_dict(input={"size": [64, 64]}), val_set, tmp_path)


def test_dynamic_height_width_the_spec_does_not_pin_is_refused(val_set, tmp_path) -> None:
    spec = spec_dict()
    spec["input"] = {k: v for k, v in spec["input"].items() if k != "size"}
    with pytest.raises(ModelError, match="dynamic and the spec does not pin them"):
        _prepare(tiny_classifier(size=None), spec, val_set, tmp_path)
    pinned = _prepare(tiny_classifier(size=None), spec_dict(), val_set, tmp_path)
    assert pinned.size == 48


def test_fixed_batch_is_refused(val_set, tmp_path) -> None:
    with pytest.raises(ModelError, match="fixed batch of 1"):
        _prepare(tiny_classifier(batch=1), spec_dict(), val_set, tmp_path)


def test_output_that_is_not_a_probability_is_refused(val_set, tmp_path) -> None:
    spec = spec_dict(output={"kind": "probabilities"})
    with pytest.raises(ModelError, match="declared as probabilities but is not"):
        _prepare(tiny_classifier(kind="logits"), spec, val_set, tmp_path)


def test_nan_outputs_on_real_images_are_refused(val_set, tmp_path) -> None:
    with pytest.raises(ModelError, match="NaN or infinite on 40 of 40 real"):
        _prepare(tiny_classifier(nan=True), spec_dict(), val_set, tmp_path)


def test_spec_naming_a_missing_node_is_refused(val_set, tmp_path) -> None:
    spec = spec_dict(embedding={"node": "backbone/pool"})
    with pytest.raises(ModelError, match="embedding node 'backbone/pool' does not exist"):
        _prepare(tiny_classifier(), spec, val_set, tmp_path)


def test_occlusion_is_one_bounded_batch_and_finds_the_evidence() -> None:
    calls = []

    def bright_centre(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(batch.shape)
        score = batch[:, 0, 24:40, 24:40].mean(axis=(1, 2))
        p = 1 / (1 + np.exp(-score))
        return np.stack([1 - p, p], axis=1), np.zeros((len(batch), 1))

    pixels = np.full((100, 120), 40, dtype=np.uint8)
    pixels[40:60, 50:70] = 250
    heat = occlusion(bright_centre, pixels, 64, 1)
    assert calls == [(65, 1, 64, 64)]
    assert heat.shape == pixels.shape and heat.max() == pytest.approx(1.0)
    assert heat[50, 60] > 0.9 and heat[5, 5] == 0.0
    assert occlusion_batch(np.ones((64, 64)), 4)[1:].min() == 0.0


def _fake_extractor(size: int):
    """A stand-in for the EfficientNet-Lite0 extractor graph (the real one is exported with
    torch, too slow for a unit test): image (N x 1 x S x S) -> pooled features (N x 1)."""
    from onnx import TensorProto, helper

    from radvigil.model.byom.extractor import ExtractorRecord

    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["features"], axis=1),
        ],
        "fake-extractor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    record = ExtractorRecord(
        name="fake",
        weights_source="none",
        weights_sha256="0" * 64,
        onnx_sha256="0" * 64,
        input_size=size,
        dim=1,
    )
    return model, record


def test_a_graph_without_embedding_gets_the_extractor_branch(val_set, tmp_path) -> None:
    spec = spec_dict(embedding=None)
    vendor = read_vendor_file(_save(tiny_classifier(), tmp_path), LIMIT)
    prepared = prepare(
        vendor,
        ModelSpec.model_validate(spec),
        val_set,
        keep_vendor_thresholds=False,
        extractor=_fake_extractor,
    )
    x = normalise(val_set.images)[:, None]
    _, embedding = OnnxEngine(prepared.graph.SerializeToString()).run(x)
    np.testing.assert_allclose(embedding[:, 0], x.mean(axis=(1, 2, 3)), atol=1e-5)
    assert prepared.extractor is not None and prepared.extractor.name == "fake"
    assert {o.version for o in prepared.graph.opset_import if o.domain == ""} == {18}


def test_a_non_square_input_is_resized_inside_the_graph(val_set, tmp_path) -> None:
    model = tiny_classifier(size=None)
    spec = spec_dict(input={"size": [48, 32]})
    prepared = _prepare(model, spec, val_set, tmp_path)
    assert prepared.size == 48 and prepared.check.width == 32
    assert any(n.op_type == "Resize" for n in prepared.graph.graph.node)


def test_retraining_an_imported_champion_is_refused_before_any_work(tmp_path) -> None:
    from radvigil.loop.retrain import retrain
    from radvigil.registry import LoadedModel

    card = small_card(imported=True)
    champion = LoadedModel("chest-pneumonia", "3", "run", tmp_path / "m.onnx", card, tmp_path, None)
    with pytest.raises(ModelError, match=r"retrain --calibration-only\) or import the vendor"):
        retrain(champion, None)  # type: ignore[arg-type]  # refused before it reads the workspace
    with pytest.raises(ModelError, match="imported versions are served in fp32 only"):
        champion.at_precision("int8")
