"""Per-image statistics and per-prediction output features: the tabular inputs of the monitors.

Image statistics come from one 256-bin histogram of the full image (exact moments, nearest-rank
percentiles, entropy, clipping) plus a Laplacian on a block-averaged copy at most 256 pixels on
its long side, so a 224x224 image costs well under 2 ms and a 3000x2500 one only a few.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from radvigil.data.image import Image
from radvigil.errors import InputError

STAT_COLUMNS: tuple[str, ...] = (
    "mean",
    "std",
    "p01",
    "p05",
    "p50",
    "p95",
    "p99",
    "entropy",
    "sharpness",
    "clip_low",
    "clip_high",
    "width",
    "height",
    "aspect",
    "bit_depth",
)
MISSING = "<NA>"
_PERCENTILES = {"p01": 0.01, "p05": 0.05, "p50": 0.50, "p95": 0.95, "p99": 0.99}
_SHARPNESS_SIDE = 256
_LEVELS = np.arange(256, dtype=np.float64)


def image_stats(pixels: np.ndarray, bit_depth: int = 8) -> dict[str, float]:
    """Statistics of one uint8 grayscale image; ``bit_depth`` is the depth as stored on disk."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.size == 0:
        raise InputError(
            f"image statistics need a non-empty 2-D uint8 array, got {pixels.dtype} {pixels.shape}"
        )
    height, width = pixels.shape
    hist = np.bincount(pixels.ravel(), minlength=256).astype(np.float64)
    prob = hist / pixels.size
    mean = float(prob @ _LEVELS)
    cdf = np.cumsum(prob)
    nonzero = prob[prob > 0]
    stats = {
        "mean": mean,
        "std": float(np.sqrt(prob @ (_LEVELS - mean) ** 2)),
        **{k: float(np.searchsorted(cdf, q - 1e-12)) for k, q in _PERCENTILES.items()},
        "entropy": float(-(nonzero * np.log2(nonzero)).sum()),
        "sharpness": laplacian_variance(pixels),
        "clip_low": float(prob[0]),
        "clip_high": float(prob[255]),
        "width": float(width),
        "height": float(height),
        "aspect": width / height,
        "bit_depth": float(bit_depth),
    }
    return stats


def laplacian_variance(pixels: np.ndarray) -> float:
    """Sharpness: variance of the Laplacian of a copy block-averaged to <= 256 px long side."""
    factor = int(np.ceil(max(pixels.shape) / _SHARPNESS_SIDE))
    if factor > 1:
        h, w = pixels.shape[0] // factor, pixels.shape[1] // factor
        blocks = pixels[: h * factor, : w * factor].reshape(h, factor, w, factor)
        work = blocks.mean(axis=(1, 3), dtype=np.float32)
    else:
        work = pixels.astype(np.float32)
    if min(work.shape) < 3:
        return 0.0
    return float(ndimage.laplace(work, mode="nearest").var())


def image_stats_frame(images: Iterable[Image | np.ndarray]) -> pd.DataFrame:
    """One row of :data:`STAT_COLUMNS` per image (bit depth from metadata when given an Image)."""
    rows = [
        image_stats(im.pixels, im.meta.bit_depth) if isinstance(im, Image) else image_stats(im)
        for im in images
    ]
    return pd.DataFrame(rows, columns=list(STAT_COLUMNS))


def prediction_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of class probabilities."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def output_features(probs: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Probabilities, predicted class, confidence (max probability) and entropy per prediction."""
    probs = check_probs(probs, len(class_names))
    frame = pd.DataFrame(probs, columns=[f"prob_{name}" for name in class_names])
    frame["predicted"] = np.asarray(class_names, dtype=object)[probs.argmax(axis=1)]
    frame["confidence"] = probs.max(axis=1)
    frame["prediction_entropy"] = prediction_entropy(probs)
    return frame


def check_probs(probs: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Validate an (N, C) probability matrix whose rows sum to one; return it as float64."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or (n_classes is not None and arr.shape[1] != n_classes):
        want = f"(N, {n_classes})" if n_classes is not None else "(N, C)"
        raise InputError(f"probabilities must have shape {want}, got {arr.shape}")
    if arr.size and (
        not np.isfinite(arr).all()
        or arr.min() < -1e-6
        or not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3)
    ):
        raise InputError("probabilities must be finite, non-negative and sum to 1 per row")
    return arr


def as_categorical(frame: pd.DataFrame) -> pd.DataFrame:
    """Metadata as strings, missing values as ``<NA>``: one spelling for tests and storage."""
    return frame.astype(object).where(frame.notna(), MISSING).astype(str)
