"""The retraining set is reproducible: the same labelled images, whatever their prediction ids
and arrival order, give the same files, hold-out split and manifest order; a warm start begins
from the champion's own weights."""

from __future__ import annotations

import io
import random
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from radvigil.data.importers import from_csv
from radvigil.errors import DataError
from radvigil.loop.retrain import LabelledCase, build_versions, content_order, warm_start_config
from radvigil.model.config import TrainConfig
from radvigil.model.network import build_classifier
from radvigil.registry import CARD_DIR, LoadedModel
from tests.helpers import small_card

REPO = Path(__file__).resolve().parents[2]


def _cases(xrays: list[tuple[str, np.ndarray]], order_seed: int) -> list[LabelledCase]:
    cases = []
    for label, pixels in xrays[:12]:
        buffer = io.BytesIO()
        PILImage.fromarray(pixels[::4, ::4].copy()).save(buffer, format="PNG")
        cases.append(LabelledCase(str(uuid.uuid4()), label, buffer.getvalue(), None, None, None))
    random.Random(order_seed).shuffle(cases)
    return cases


def _split_by_content(version) -> list[tuple[str, str, str]]:
    frame = version.frame[version.frame["source_dataset"] == "clinician_feedback"]
    return list(zip(frame["path"], frame["sha256"], frame["split"], strict=True))


def test_same_images_give_the_same_split_whatever_their_ids(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    parent = from_csv(REPO / "data" / "bundled" / "manifest.csv").version
    first, _ = build_versions(parent, content_order(_cases(xrays, 1)), tmp_path / "a", 0.3, 42)
    again, problems = build_versions(
        parent, content_order(_cases(xrays, 2)), tmp_path / "a", 0.3, 42
    )
    assert _split_by_content(first) == _split_by_content(again)  # new ids, new arrival order
    splits = [split for _, _, split in _split_by_content(first)]
    assert splits.count("test") == round(0.3 * 12) and splits.count("train") == 12 - 4
    assert set(problems.frame["split"]) == {"test"} and len(problems.frame) == 4  # held out


def test_a_calibration_share_joins_validation_and_stays_out_of_the_problem_cases(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    parent = from_csv(REPO / "data" / "bundled" / "manifest.csv").version
    version, problems = build_versions(
        parent, content_order(_cases(xrays, 1)), tmp_path / "a", 0.25, 42, 0.25
    )
    splits = [split for _, _, split in _split_by_content(version)]
    assert (splits.count("test"), splits.count("val"), splits.count("train")) == (3, 3, 6)
    held_out = {sha for _, sha, split in _split_by_content(version) if split == "test"}
    assert set(problems.frame["sha256"]) == held_out


def test_a_warm_start_continues_from_the_champions_own_weights(tmp_path: Path) -> None:
    cfg = TrainConfig(backbone="resnet10t", input_size=64, epochs=5, lr=0.003, unfreeze_epochs=1)
    champion = LoadedModel("m", "1", "run", tmp_path / "model.onnx", small_card(), tmp_path, None)
    with pytest.raises(DataError, match="no saved weights"):
        warm_start_config(cfg, champion, 2)
    trained = build_classifier("resnet10t", 2)
    (tmp_path / CARD_DIR).mkdir()
    torch.save(trained.state_dict(), tmp_path / CARD_DIR / "weights.pt")

    warm = warm_start_config(cfg, champion, 2)
    assert (warm.epochs, warm.unfreeze_epochs, warm.top_epochs, warm.warmup_epochs) == (2, 0, 0, 0)
    assert warm.lr == cfg.lr and warm.seed == cfg.seed
    started = build_classifier("resnet10t", 2, warm.weights)
    for key, value in trained.state_dict().items():  # every tensor, the head included
        torch.testing.assert_close(started.state_dict()[key], value)
    assert started.weights_record.sha256 and "by name" in started.weights_record.mapping
