"""Calibration, thresholds, shared preprocessing, weights loading and ONNX parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from radvigil.data.io import read_image
from radvigil.errors import ModelError
from radvigil.metrics import expected_calibration_error
from radvigil.model.calibrate import fit_temperature, softmax
from radvigil.model.engine import OnnxEngine
from radvigil.model.export import export_onnx, parity
from radvigil.model.network import build_classifier
from radvigil.model.preprocess import normalise, resize, to_batch


def _bundled_images(bundled: Path, n: int) -> list[np.ndarray]:
    files = sorted((bundled / "kermany" / "val").rglob("*.jpg"))[:n]
    return [read_image(f).pixels for f in files]


def test_temperature_fixes_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 2000)
    clean = np.stack([1 - targets, targets], axis=1) * 1.0 + rng.normal(0, 1.0, (2000, 2))
    logits = clean * 6.0  # far too confident
    temperature = fit_temperature(logits, targets)
    assert temperature > 2.0
    positive, ones = (targets == 1).astype(float), np.ones((1, len(targets)))
    before = expected_calibration_error(positive, softmax(logits)[:, 1], ones)[0]
    after = expected_calibration_error(positive, softmax(logits, temperature)[:, 1], ones)[0]
    assert after < before / 2


def test_serving_preprocessing_equals_training(bundled: Path) -> None:
    images = _bundled_images(bundled, 4)
    batch = to_batch(images, 64)
    manual = np.stack([normalise(resize(img, 64)) for img in images])[:, None]
    np.testing.assert_array_equal(batch, manual)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    source = build_classifier("resnet10t", 2)
    path = tmp_path / "weights.pt"
    torch.save(source.backbone.state_dict(), path)
    loaded = build_classifier("resnet10t", 2, weights=path)
    for a, b in zip(source.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


def test_garbage_weights_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights file"):
        build_classifier("resnet10t", 2, weights=path)


def test_onnx_matches_pytorch_on_real_images(tmp_path: Path, bundled: Path) -> None:
    torch.manual_seed(0)
    model = build_classifier("resnet10t", 2)
    onnx_path = export_onnx(model, 1.7, 64, tmp_path / "m.onnx")
    batch = to_batch(_bundled_images(bundled, 8), 64)
    assert parity(model, 1.7, onnx_path, batch) < 1e-4
    probs, embedding = OnnxEngine(onnx_path).run(batch)
    assert probs.shape == (8, 2) and embedding.shape == (8, model.embedding_dim)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_oversampling_repeats_only_the_named_source() -> None:
    import pandas as pd

    from radvigil.model.dataset import ArraySet, oversampled

    frame = pd.DataFrame({"source_dataset": ["kermany", "clinician_feedback", "kermany"]})
    data = ArraySet(np.arange(3, dtype=np.uint8)[:, None, None], np.array([0, 1, 0]), frame)
    out = oversampled(data, {"clinician_feedback": 3})
    assert out.images[:, 0, 0].tolist() == [0, 1, 1, 1, 2]
    assert out.targets.tolist() == [0, 1, 1, 1, 0]
    assert out.frame["source_dataset"].tolist().count("clinician_feedback") == 3
    assert oversampled(data, {}) is data


def test_averaged_epochs_are_the_mean_of_float_weights_and_keep_the_last_counters() -> None:
    from radvigil.model.train import average_states

    first = {"w": torch.tensor([0.0, 2.0]), "bn.num_batches_tracked": torch.tensor(3)}
    second = {"w": torch.tensor([1.0, 4.0]), "bn.num_batches_tracked": torch.tensor(7)}
    out = average_states([first, second])
    assert out["w"].tolist() == [0.5, 3.0]
    assert int(out["bn.num_batches_tracked"]) == 7


def test_a_target_sensitivity_in_the_config_aims_every_finding_threshold() -> None:
    from radvigil.loop.training import with_target
    from radvigil.task import load_task

    task = load_task("chest-pneumonia")
    assert with_target(task, None) is task
    aimed = with_target(task, 0.99)
    assert all(aimed.target_for(f) == 0.99 for f in aimed.findings)
    assert task.target_for(task.findings[0]) == 0.98  # the shipped task is unchanged
