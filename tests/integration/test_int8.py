"""int8 that is evaluated, gated and servable: a real training run with quantize: true on the
bundled images, the int8 graph judged at the fp32 version's operating thresholds, its own gate
tag, and a service that runs it only once that gate passed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvigil.errors import ModelError
from radvigil.evaluation import criteria_from_dict
from radvigil.loop.evaluation import evaluate_version, gate_version, verdict_tag
from radvigil.loop.governance import gate_status
from radvigil.loop.training import run_training
from radvigil.registry import INT8_FILE, Tag
from radvigil.service.lifecycle import load_served
from tests.helpers import make_home, tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LENIENT = {"n_resamples": 200, "gates": [{"kind": "min_auc", "default": 0.5}]}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory):
    home = make_home(tmp_path_factory.mktemp("int8-home"))
    outcome = run_training(
        tiny_config(quantize=True), home.data_version, home.catalog, home.registry
    )
    return home, outcome.version


def test_the_int8_graph_is_evaluated_at_the_fp32_thresholds(quantized, trained_home) -> None:
    home, version = quantized
    fp32 = home.registry.load(f"chest-pneumonia/{version}")
    int8 = fp32.at_precision("int8")
    assert int8.precision == "int8" and int8.onnx_path.name == INT8_FILE
    data = home.catalog.load(home.data_version)
    a, scored_a = evaluate_version(fp32, data, "test")
    b, scored_b = evaluate_version(int8, data, "test")
    assert scored_a.thresholds == scored_b.thresholds  # the same operating point
    assert not np.array_equal(scored_a.probs, scored_b.probs)  # really another graph
    fa, fb = a.finding("pneumonia"), b.finding("pneumonia")
    assert fa.threshold == fb.threshold
    assert abs(fa.auc.value - fb.auc.value) < 0.05  # the ranking survives quantisation...
    # ...but the probabilities move, far beyond fp32 rounding (~1e-6), so cases near the
    # threshold can change sides: on this tiny model sensitivity at the same threshold once fell
    # from 0.98 to 0.88 (on 8 Dec it held; the largest move was 6e-4). Hence int8's own gate.
    moved = float(np.abs(scored_a.probs - scored_b.probs).max())
    assert moved > 1e-4, moved
    # The session's plain model (tiny_config(), quantize off) has no int8 graph to run.
    plain_home, plain = trained_home
    with pytest.raises(ModelError, match="has no int8 graph"):
        plain_home.registry.load(f"chest-pneumonia/{plain.version}").at_precision("int8")


def test_int8_is_served_only_after_its_own_gate_passed(quantized) -> None:
    home, version = quantized
    ref = f"chest-pneumonia/{version}"
    unjudged = load_served(home.registry, ref, "champion", precision="int8")
    assert unjudged.loaded.precision == "fp32"
    assert "no passing gate" in unjudged.precision_note

    int8 = home.registry.load(ref).at_precision("int8")
    data = home.catalog.load(home.data_version)
    verdict = gate_version(criteria_from_dict(LENIENT), int8, None, data, "test")
    assert verdict.passed
    home.registry.set_version_tag(
        "chest-pneumonia", version, Tag.gate("int8"), verdict_tag(verdict)
    )
    assert gate_status(home.registry, "chest-pneumonia", version, "int8") == "passed"
    assert gate_status(home.registry, "chest-pneumonia", version) == "none"  # fp32 untouched

    served = load_served(home.registry, ref, "champion", precision="int8")
    assert served.loaded.precision == "int8" and served.precision_note is None
    probs, _ = served.run(np.zeros((2, 1, served.size, served.size), dtype=np.float32))
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    assert isinstance(Path(served.loaded.onnx_path), Path)
