"""Real X-rays turned into one of each QC problem, for the QC and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage


def _save(pixels: np.ndarray, path: Path, **options: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(path, **options)


def make_problem_folder(root: Path, xrays: list[tuple[str, np.ndarray]]) -> dict[str, str]:
    """Six good X-rays plus one problem made from each of six others: path -> expected check."""
    for index, (label, pixels) in enumerate(xrays[6:]):
        _save(pixels, root / "train" / label / f"ok{index}.png")
    tinted = np.stack([xrays[0][1].astype(float) + d for d in (50, 0, -40)], axis=-1)
    _save(np.clip(tinted, 0, 255).astype(np.uint8), root / "train" / "normal" / "tinted.png")
    _save(xrays[1][1][::3, ::3].copy(), root / "train" / "normal" / "small.png")
    strip = PILImage.fromarray(xrays[2][1][60:160]).resize((360, 100))
    _save(np.asarray(strip), root / "train" / "normal" / "strip.png")
    x = xrays[3][1].astype(float)
    _save(
        np.clip(110 + (x - x.mean()) * 0.3, 0, 255).astype(np.uint8), root / "train/normal/dim.png"
    )
    burnt = np.clip(xrays[4][1].astype(float) + 170, 0, 255).astype(np.uint8)
    _save(burnt, root / "train" / "normal" / "burnt.png")
    recompressed = np.clip(xrays[6][1] * 1.05, 0, 255).astype(np.uint8)
    _save(recompressed, root / "test" / "normal" / "copy_of_ok0.jpg", quality=50)
    _save(xrays[5][1], root / "test" / "pneumonia" / "changed.png")
    _save(np.fliplr(xrays[5][1]).copy(), root / "test" / "pneumonia" / "missing.png")
    return {
        "train/normal/tinted.png": "not_radiograph",
        "train/normal/small.png": "too_small",
        "train/normal/strip.png": "aspect_ratio",
        "train/normal/burnt.png": "exposure",
        "test/normal/copy_of_ok0.jpg": "leakage",
        "test/pneumonia/changed.png": "unreadable",
        "test/pneumonia/missing.png": "unreadable",
    }


def spoil_after_import(root: Path, xrays: list[tuple[str, np.ndarray]]) -> None:
    """Files that change or vanish after import (QC re-reads and re-hashes every file)."""
    _save(xrays[7][1], root / "test" / "pneumonia" / "changed.png")
    (root / "test" / "pneumonia" / "missing.png").unlink()
