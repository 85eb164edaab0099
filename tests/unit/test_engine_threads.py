"""ORT thread settings: the core-count rule, the setting, and that they reach the session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from pydantic import ValidationError

from radvigil.config import Settings
from radvigil.model.engine import OnnxEngine, ort_threads, usable_cores


def _tiny_onnx(path: Path) -> Path:
    """A two-output graph shaped like radvigil's (probabilities, embedding); no weights needed."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])
    probs = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 16])
    emb = helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["n", 16])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 16])
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Softmax", ["flat"], ["probs"], axis=1),
        helper.make_node("Identity", ["flat"], ["emb"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [probs, emb], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("cores", "expected"), [(1, 1), (2, 1), (3, 2), (4, 3), (8, 7), (16, 8), (64, 8)]
)
def test_auto_rule_leaves_python_a_core(cores: int, expected: int) -> None:
    assert ort_threads("auto", cores) == expected


def test_a_number_is_taken_as_given() -> None:
    assert ort_threads(3, cores=2) == 3
    assert ort_threads("auto") == ort_threads("auto", usable_cores())


def test_setting_defaults_to_auto_and_reads_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("RADVIGIL_ORT_THREADS", raising=False)
    assert Settings().ort_threads == "auto"
    monkeypatch.setenv("RADVIGIL_ORT_THREADS", "3")
    assert Settings().ort_threads == 3
    monkeypatch.setenv("RADVIGIL_ORT_THREADS", "0")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("setting", ["auto", 3])
def test_settings_reach_the_ort_session(tmp_path: Path, setting) -> None:
    engine = OnnxEngine(_tiny_onnx(tmp_path / "tiny.onnx"), threads=setting)
    options = engine.session.get_session_options()
    assert options.intra_op_num_threads == ort_threads(setting)
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    probs, emb = engine.run(np.zeros((2, 1, 4, 4), np.float32))
    assert probs.shape == emb.shape == (2, 16)


def test_the_service_passes_its_setting_to_the_model_manager(tmp_path: Path) -> None:
    from radvigil.registry import Registry
    from radvigil.service.state import ServiceState
    from tests.helpers import mlflow_store

    settings = Settings(home=tmp_path, ort_threads=3)
    settings.ensure_home()
    registry = Registry(mlflow_store(tmp_path / "mlflow.db"), tmp_path / "art", tmp_path / "c")
    assert ServiceState.build(settings, registry).models.threads == 3
