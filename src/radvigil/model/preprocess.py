"""The one preprocessing every path shares: training, evaluation, export parity and serving.

A uint8 grayscale image is resized (bilinear) to a square ``size`` and scaled to
``(x / 255 - MEAN) / STD``. Keeping this in one function is what makes the served model the
evaluated model.
"""

from __future__ import annotations

import cv2
import numpy as np

MEAN = 0.5
STD = 0.25


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 H x W image to size x size (area filter when shrinking)."""
    if pixels.shape == (size, size):
        return pixels
    shrinking = pixels.shape[0] > size or pixels.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (size, size), interpolation=interpolation)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> float32 normalised with the fixed mean and std."""
    return ((pixels.astype(np.float32) / 255.0) - MEAN) / STD


def to_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """Stack uint8 images into the model's N x 1 x size x size float32 input."""
    batch = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, pixels in enumerate(images):
        batch[i, 0] = normalise(resize(pixels, size))
    return batch
