"""Training augmentations on uint8 images (numpy in, numpy out), seeded by the caller's rng."""

from __future__ import annotations

import cv2
import numpy as np

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
    matrix[:, 2] += (dx, dy)
    out = cv2.warpAffine(
        out, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    if rng.random() < cfg.hflip:
        out = out[:, ::-1]
    gain = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    bias = rng.uniform(-cfg.brightness, cfg.brightness) * 255 * 0.5
    mean = float(out.mean())
    out = (out.astype(np.float32) - mean) * gain + mean + bias
    return np.clip(out, 0, 255).astype(np.uint8)
