"""Image statistics and output features on real Kermany radiographs (bundled 224x224 JPEGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from radvigil.data.io import read_image
from radvigil.errors import InputError
from radvigil.monitoring import STAT_COLUMNS, image_stats, image_stats_frame, output_features


@pytest.fixture(scope="module")
def radiograph(bundled: Path) -> np.ndarray:
    return read_image(bundled / "kermany" / "test" / "normal" / "IM-0001-0001.jpg").pixels


def test_stats_match_numpy_on_a_real_radiograph(radiograph: np.ndarray) -> None:
    stats = image_stats(radiograph)
    assert list(stats) == list(STAT_COLUMNS)
    assert stats["mean"] == pytest.approx(radiograph.mean())
    assert stats["std"] == pytest.approx(radiograph.std())
    expected = np.percentile(radiograph, [1, 5, 50, 95, 99], method="inverted_cdf")
    assert [stats[k] for k in ("p01", "p05", "p50", "p95", "p99")] == list(expected)
    assert 0 < stats["entropy"] <= 8
    assert stats["clip_low"] == pytest.approx((radiograph == 0).mean())
    assert (stats["width"], stats["height"], stats["aspect"], stats["bit_depth"]) == (
        224,
        224,
        1.0,
        8,
    )


def test_sharpness_is_computed_on_a_downsampled_copy_of_large_images(
    radiograph: np.ndarray,
) -> None:
    upscaled = np.kron(radiograph, np.ones((4, 4), dtype=np.uint8))  # 896 px: blocks of 4
    assert image_stats(upscaled)["sharpness"] == pytest.approx(image_stats(radiograph)["sharpness"])
    assert image_stats(upscaled)["width"] == 896


def test_stats_move_with_brightness_and_blur(radiograph: np.ndarray) -> None:
    base = image_stats(radiograph)
    brighter = image_stats(np.clip(radiograph * 1.2, 0, 255).astype(np.uint8))
    blurred = image_stats(ndimage.uniform_filter(radiograph, size=5))
    assert brighter["mean"] > base["mean"] * 1.15
    assert brighter["clip_high"] > base["clip_high"]
    assert blurred["sharpness"] < base["sharpness"] / 4


def test_stats_frame_takes_bit_depth_from_image_metadata(bundled: Path) -> None:
    paths = sorted((bundled / "kermany" / "val" / "pneumonia").glob("*.jpg"))[:5]
    frame = image_stats_frame([read_image(p) for p in paths])
    assert frame.shape == (5, len(STAT_COLUMNS))
    assert (frame["bit_depth"] == 8).all()


def test_stats_refuse_colour_or_float_arrays() -> None:
    with pytest.raises(InputError, match="2-D uint8"):
        image_stats(np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="2-D uint8"):
        image_stats(np.zeros((8, 8), dtype=np.float32))


def test_output_features() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    frame = output_features(probs, ["normal", "pneumonia"])
    assert list(frame.columns) == [
        "prob_normal",
        "prob_pneumonia",
        "predicted",
        "confidence",
        "prediction_entropy",
    ]
    assert frame["predicted"].tolist() == ["normal", "pneumonia", "normal"]
    assert frame["confidence"].tolist() == [0.9, 0.7, 0.5]
    assert frame["prediction_entropy"].iloc[2] == pytest.approx(np.log(2))
    with pytest.raises(InputError, match="sum to 1"):
        output_features(np.array([[0.9, 0.3]]), ["normal", "pneumonia"])
    with pytest.raises(InputError, match=r"shape \(N, 2\)"):
        output_features(np.ones((2, 3)) / 3, ["normal", "pneumonia"])
