"""Harm of a shifted window: the estimated change at the served threshold, and what explains it.

When every window of a site differs from the reference, eight red detectors do not say what to
do. This module says what the shift costs and what it looks like:

* the performance change at the served operating threshold, estimated without labels as CBPE
  does (expected confusion from calibrated probabilities, :func:`expected_rates`), window minus
  reference, both estimated the same way so the probabilities' own bias cancels;
* the known perturbation of the robustness suite whose *signature* (how the medians of the
  processing statistics move under it, measured on real films by
  ``scripts/processing_signatures.py``) is nearest the window's own movement, in units of the
  reference's spread, when it explains most of that movement (:func:`match_signature`).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

SIGNATURES_PATH = Path(__file__).with_name("signatures.json")
# Processing and tone statistics and how a change is measured: log ratio of medians for
# positive scales, difference of medians for bounded ones.
SIGNATURE_COLUMNS: dict[str, Literal["log", "diff"]] = {
    "noise_sigma": "log",
    "hf_ratio": "log",
    "blockiness": "log",
    "sharpness": "log",
    "std": "log",
    "midtone": "diff",
    "entropy": "diff",
    "corner_fill": "diff",
}
# Smallest spread per column, so a near-constant reference column cannot dominate the match.
_MIN_SCALE = {"log": 0.02, "diff": 0.01}
# How a perturbation reads in an alert.
DESCRIPTIONS = {
    "jpeg": "JPEG recompression",
    "sharpen": "sharpening",
    "blur": "smoothing",
    "gaussian_noise": "added noise",
    "speckle": "multiplicative noise",
    "gamma": "tone-curve (gamma) change",
    "rotation": "rotation",
    "resolution": "resampling",
}
MIN_SHIFT = 2.0  # reference spreads: a smaller processing movement is not called a perturbation
MIN_EXPLAINED = 0.6  # share of the movement's squared length a signature must explain


class Signature(BaseModel):
    """How one suite perturbation at one strength moves the processing statistics' medians."""

    shift: str
    level: Literal["mild", "strong"]
    params: dict[str, float]
    change: dict[str, float]

    @property
    def label(self) -> str:
        return f"{self.level} {DESCRIPTIONS.get(self.shift, self.shift)}"


class SignatureMatch(BaseModel):
    """The nearest signature, and the share of the window's movement it explains."""

    perturbation: str
    shift: str
    level: str
    explained: float
    distance: float


@cache
def load_signatures(path: Path = SIGNATURES_PATH) -> tuple[Signature, ...]:
    """The bundled signatures (regenerate with ``scripts/processing_signatures.py``)."""
    body = json.loads(path.read_text())
    return tuple(Signature.model_validate(s) for s in body["signatures"])


def _transformed(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column].to_numpy(np.float64)
    values = values[np.isfinite(values)]
    if SIGNATURE_COLUMNS[column] == "log":
        return np.log(np.clip(values, 1e-6, None))
    return values


def median_change(reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, float]:
    """Per signature column both frames hold: how the window's median moved from the reference's."""
    out = {}
    for column in SIGNATURE_COLUMNS:
        if column in reference and column in window:
            ref, cur = _transformed(reference, column), _transformed(window, column)
            if ref.size and cur.size:
                out[column] = float(np.median(cur) - np.median(ref))
    return out


def reference_scale(reference: pd.DataFrame) -> dict[str, float]:
    """Per signature column: the reference's robust spread (1.4826 MAD) in the change's units."""
    out = {}
    for column, kind in SIGNATURE_COLUMNS.items():
        if column in reference:
            values = _transformed(reference, column)
            if values.size:
                mad = 1.4826 * float(np.median(np.abs(values - np.median(values))))
                out[column] = max(mad, _MIN_SCALE[kind])
    return out


def match_signature(
    change: dict[str, float],
    scale: dict[str, float],
    signatures: tuple[Signature, ...] | None = None,
) -> SignatureMatch | None:
    """The suite perturbation whose signature best explains ``change``, or None.

    Both are divided by the reference's spread per column; the nearest signature explains
    ``1 - (distance / length)^2`` of the movement. None when the movement is shorter than
    :data:`MIN_SHIFT` spreads or no signature explains :data:`MIN_EXPLAINED` of it.
    """
    columns = [c for c in change if c in scale]
    if not columns:
        return None
    x = np.array([change[c] / scale[c] for c in columns])
    length = float(np.linalg.norm(x))
    if length < MIN_SHIFT:
        return None
    best: SignatureMatch | None = None
    for sig in signatures if signatures is not None else load_signatures():
        s = np.array([sig.change.get(c, 0.0) / scale[c] for c in columns])
        distance = float(np.linalg.norm(x - s))
        explained = 1.0 - (distance / length) ** 2
        if best is None or distance < best.distance:
            best = SignatureMatch(
                perturbation=sig.label,
                shift=sig.shift,
                level=sig.level,
                explained=explained,
                distance=distance,
            )
    return best if best is not None and best.explained >= MIN_EXPLAINED else None


def expected_rates(
    probs: np.ndarray, positive_class: int, threshold: float | None
) -> dict[str, float]:
    """CBPE at an operating threshold: expected sensitivity and specificity of the decisions.

    A case is decided positive when its ``positive_class`` probability reaches ``threshold``
    (argmax when None); a calibrated probability p counts p of a true positive and 1 - p of a
    false one among positive decisions, and the same among negative ones.
    """
    p = np.asarray(probs, dtype=np.float64)[:, positive_class]
    decided = p >= threshold if threshold is not None else probs.argmax(axis=1) == positive_class
    tp, fp = p[decided].sum(), (1 - p[decided]).sum()
    fn, tn = p[~decided].sum(), (1 - p[~decided]).sum()
    return {
        "sensitivity": float(tp / (tp + fn)) if tp + fn > 0 else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp > 0 else float("nan"),
    }
