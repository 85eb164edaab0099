"""Training augmentations on uint8 images (numpy in, numpy out), seeded by the caller's rng."""

from __future__ import annotations

import cv2
import numpy as np

from radvigil.data.shifts import PROCESSING_SUITE, get_shift, get_spec
from radvigil.model.config import AugmentConfig


def augment(pixels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply the configured random augmentations to one square uint8 image."""
    out = pixels
    if rng.random() < cfg.clahe:
        out = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(out)
    size = out.shape[0]
    angle = rng.uniform(-cfg.rotation, cfg.rotation)
    scale = 1.0 / np.sqrt(rng.uniform(cfg.crop_scale, 1.0))
    shift = (1 - 1 / scale) * size / 2
    dx, dy = rng.uniform(-shift, shift, size=2) if shift > 0 else (0.0, 0.0)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += np.array([dx, dy])
    black = cfg.black_corners > 0 and rng.random() < cfg.black_corners  # drawn only when on
    border = cv2.BORDER_CONSTANT if black else cv2.BORDER_REFLECT_101
    out = cv2.warpAffine(out, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    if rng.random() < cfg.hflip:
        out = out[:, ::-1]
    if cfg.gamma > 0 or cfg.levels > 0:  # drawn only when on: older configs replay exactly
        out = _tone_curve(out, cfg, rng)
    gain = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    bias = rng.uniform(-cfg.brightness, cfg.brightness) * 255 * 0.5
    mean = float(out.mean())
    out = (out.astype(np.float32) - mean) * gain + mean + bias
    out = np.clip(out, 0, 255).astype(np.uint8)
    if cfg.processing > 0 and rng.random() < cfg.processing:  # drawn only when on
        out = processing_change(out, rng)
    return out


def processing_change(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One shift of the robustness suite, its parameter drawn between no change and the suite's
    mild strength (a rotation either way): what a version must survive to pass the robustness
    gate (issue #33), so training sees it."""
    names = sorted(PROCESSING_SUITE)
    name = names[int(rng.integers(len(names)))]
    mild = PROCESSING_SUITE[name][0]
    spec = get_spec(name)
    params: dict[str, float] = {}
    for key, value in mild.items():
        low, high = sorted((spec.params[key].identity, value))
        drawn = float(rng.uniform(low, high))
        params[key] = -drawn if name == "rotation" and rng.random() < 0.5 else drawn
    return get_shift(name, **params)(pixels, rng)


def _tone_curve(pixels: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A random gamma and black/white points through one lookup table: what another
    detector's LUT or exposure does to the grey levels (Kermany's two acquisition batches differ
    mostly in the floor: the test folder's normals have a lifted black level)."""
    grey = np.arange(256, dtype=np.float32) / 255
    if cfg.gamma > 0:
        grey = grey ** (2.0 ** rng.uniform(-cfg.gamma, cfg.gamma))
    if cfg.levels > 0:
        black, white = rng.uniform(-cfg.levels, cfg.levels, size=2)
        grey = black + (1 - white - black) * grey
    table = np.clip(np.rint(grey * 255), 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(pixels), table)
