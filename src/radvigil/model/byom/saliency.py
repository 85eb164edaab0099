"""Occlusion saliency: a model-agnostic explanation for graphs without PyTorch weights.

Grad-CAM needs the network's gradients; an imported ONNX graph has none. Occlusion needs only
forward passes: each cell of a fixed GRID x GRID grid is greyed out in turn and the drop in the
class probability is that cell's evidence. The cost is bounded and fixed: one batched ONNX
Runtime call of GRID*GRID + 1 images whatever the model, at the served input size.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from radvigil.model.preprocess import normalise, resize

GRID = 8
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def occlusion_batch(x: np.ndarray, grid: int = GRID) -> np.ndarray:
    """``x`` (S x S, preprocessed) followed by one copy per grid cell with that cell at 0
    (mid-grey in radvigil's normalisation): (grid*grid + 1) x 1 x S x S."""
    size = x.shape[-1]
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    batch = np.repeat(x[None, None], grid * grid + 1, axis=0).astype(np.float32)
    for r in range(grid):
        for c in range(grid):
            batch[1 + r * grid + c, 0, edges[r] : edges[r + 1], edges[c] : edges[c + 1]] = 0.0
    return batch


def occlusion(
    run: Runner, pixels: np.ndarray, size: int, class_index: int, grid: int = GRID
) -> np.ndarray:
    """Heatmap in [0, 1] with the shape of ``pixels``: how much greying out each cell lowers
    the probability of ``class_index`` (cells that raise it count as no evidence)."""
    x = normalise(resize(pixels, size))
    probs, _ = run(occlusion_batch(x, grid))
    drop = np.clip(probs[0, class_index] - probs[1:, class_index], 0.0, None).reshape(grid, grid)
    peak = float(drop.max())
    cells = drop / peak if peak > 0 else drop
    height, width = pixels.shape[:2]
    return cv2.resize(cells.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
