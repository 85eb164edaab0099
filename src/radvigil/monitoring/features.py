"""Per-image statistics and per-prediction output features: the tabular inputs of the monitors.

Image statistics come from one 256-bin histogram of the full image (exact moments, nearest-rank
percentiles, entropy, clipping) plus a Laplacian on a block-averaged copy at most 256 pixels on
its long side, so a 224x224 image costs well under 2 ms and a 3000x2500 one only a few. Layout
statistics of a 64x64 copy describe where a chest radiograph's anatomy sits (mediastinum
brighter than the lung fields, dark periphery, vertical spine, corners, flat collimated edges):
the per-case guards of :mod:`radvigil.monitoring.guards` compare them with the reference.
Processing statistics of a full-resolution central crop (noise, high-frequency ratio, 8x8
blockiness) say how a film was processed after acquisition: denoised, sharpened, recompressed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image as PILImage
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
    "midtone",
    "mediastinum_contrast",
    "border_contrast",
    "corner_fill",
    "edge_flat",
    "tilt",
    "axis_ratio",
    "noise_sigma",
    "hf_ratio",
    "blockiness",
)
MISSING = "<NA>"
_PERCENTILES = {"p01": 0.01, "p05": 0.05, "p50": 0.50, "p95": 0.95, "p99": 0.99}
_SHARPNESS_SIDE = 256
_LEVELS = np.arange(256, dtype=np.float64)
_LAYOUT = 64
# Processing statistics need full-resolution pixels (downsampling hides noise and JPEG blocks),
# so they read a central crop at most this many pixels a side, its offset a multiple of 8 so that
# a JPEG's block grid keeps its phase.
_CROP = 256
# A thumbnail (e.g. 28 px MedMNIST) holds no processing information: noise and edge estimates
# on it are dominated by anatomy and resampling, so it gets constant values instead.
_MIN_CROP = 64
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


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
    # Where the median sits between p05 and p95: a LUT/gamma change moves it.
    stats["midtone"] = (stats["p50"] - stats["p05"]) / (stats["p95"] - stats["p05"] + 1.0)
    stats |= layout_stats(pixels)
    stats |= processing_stats(pixels)
    return stats


def processing_stats(pixels: np.ndarray) -> dict[str, float]:
    """How the film was processed, on a full-resolution central crop of at most 256 px a side.

    ``noise_sigma``: Immerkaer's fast noise estimate (grey levels) over the flatter half of the
    crop, so anatomy edges do not count as noise (raised by added or multiplicative noise);
    ``hf_ratio``: RMS Laplacian over RMS band-pass detail (image minus a sigma-2 blur), both
    less the share white noise explains: a sharpening kernel raises it, smoothing lowers it,
    added noise leaves it about where it was (so the noise guard, not this one, catches noise);
    ``blockiness``: mean
    absolute step across 8x8 block boundaries over the step inside blocks (about 1 unless the
    film was JPEG-compressed hard enough to show blocks). Images under 64 px a side get
    constant values (0, 0, 1).
    """
    height, width = pixels.shape
    top = ((height - min(height, _CROP)) // 2) // 8 * 8
    left = ((width - min(width, _CROP)) // 2) // 8 * 8
    x = pixels[top : top + _CROP, left : left + _CROP].astype(np.float64)
    if min(x.shape) < _MIN_CROP:
        return {"noise_sigma": 0.0, "hf_ratio": 0.0, "blockiness": 1.0}
    residual = np.abs(ndimage.convolve(x, _NOISE_KERNEL, mode="nearest")[1:-1, 1:-1])
    gradient = np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1))[1:-1, 1:-1]
    flat = gradient <= np.median(gradient)
    noise = float(np.sqrt(np.pi / 2) * residual[flat].mean() / 6)
    # White noise of variance v adds 20 v to the mean squared Laplacian (kernel weights 4 and
    # four 1s) and about v to the band-pass detail; removing both keeps added noise out of the
    # sharpening statistic. v is estimated over the whole crop (speckle is signal-dependent).
    # Pixels near black fill (a rotated or shrunken field) are left out: the fill's hard edge
    # is not processing, and squared sums would let it dominate.
    keep = ~ndimage.binary_dilation(x == 0, np.ones((3, 3), bool), iterations=6)[1:-1, 1:-1]
    if keep.sum() < 64:
        keep[:] = True
    v = float((residual[keep] ** 2).mean() / 36)
    laplacian = ndimage.laplace(x, mode="nearest")[1:-1, 1:-1][keep]
    detail = (x - ndimage.gaussian_filter(x, 2.0))[1:-1, 1:-1][keep]
    edges = max(float((laplacian**2).mean()) - 20 * v, 1e-9)
    hf_ratio = float(np.sqrt(edges / max(float((detail**2).mean()) - v, 1e-9)))
    dx, dy = np.abs(np.diff(x, axis=1)), np.abs(np.diff(x, axis=0))
    inner_x, inner_y = np.ones(dx.shape[1], bool), np.ones(dy.shape[0], bool)
    inner_x[7::8], inner_y[7::8] = False, False
    across = dx[:, 7::8].mean() + dy[7::8, :].mean()
    inside = dx[:, inner_x].mean() + dy[inner_y, :].mean()
    return {
        "noise_sigma": noise,
        "hf_ratio": hf_ratio,
        "blockiness": float(across / (inside + 1e-6)),
    }


def layout_stats(pixels: np.ndarray) -> dict[str, float]:
    """Where the anatomy sits, on a 64x64 box-filtered copy (chest radiograph geometry).

    ``mediastinum_contrast``: central vertical strip minus the two lung fields, in image SDs
    (positive on a chest film; negative when intensities are inverted; high when cropped to the
    lungs); ``border_contrast``: outer frame minus centre, in SDs; ``corner_fill``: share of the
    corners at black (rotation fill, shrunken field); ``edge_flat``: share of the four edges that
    are flat bands (collimation); ``tilt``: angle in degrees of the brightest central column per
    row (the spine); ``axis_ratio``: share of the layout variance across columns (vertical
    structure; about 0.9 upright, low when turned by 90 degrees).
    """
    s = np.asarray(
        PILImage.fromarray(pixels).resize((_LAYOUT, _LAYOUT), PILImage.Resampling.BOX),
        dtype=np.float64,
    )
    sd = float(s.std()) + 1.0
    lungs = np.concatenate([s[12:44, 8:22].ravel(), s[12:44, 42:56].ravel()]).mean()
    frame = np.concatenate([s[:6].ravel(), s[-6:].ravel(), s[:, :6].ravel(), s[:, -6:].ravel()])
    k = 10
    corners = np.concatenate(
        [s[:k, :k].ravel(), s[:k, -k:].ravel(), s[-k:, :k].ravel(), s[-k:, -k:].ravel()]
    )
    edges = (s[:4], s[-4:], s[:, :4], s[:, -4:])
    centre = ndimage.uniform_filter1d(s[8:56, 20:44], 5, axis=1)
    slope = np.polyfit(np.arange(8, 56), centre.argmax(axis=1), 1)[0]
    col, row = s.mean(axis=0), s.mean(axis=1)
    return {
        "mediastinum_contrast": float((s[12:52, 27:37].mean() - lungs) / sd),
        "border_contrast": float((frame.mean() - s[16:48, 16:48].mean()) / sd),
        "corner_fill": float(np.mean(corners <= 3)),
        "edge_flat": float(np.mean([e.std() < 2.0 for e in edges])),
        "tilt": float(np.degrees(np.arctan(slope))),
        "axis_ratio": float(col.var() / (col.var() + row.var() + 1e-9)),
    }


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
