"""Why a served case goes to a clinician: drifters, low confidence, and an audit sample.

Drifters (OOD, quality, guards) alone are a biased sample: a quiet acquisition change can make
the model confidently wrong on cases that look ordinary. A small *audit sample* of ordinary
traffic, chosen by the image's content hash (so the same study is chosen on every run and
every replica), gives the labelled monitors and site calibration an unbiased view of the site.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReviewPolicy:
    """Which served cases are routed to review besides drifters."""

    confidence_below: float = 0.7
    audit_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence_below <= 1.0:
            raise ValueError(f"confidence_below must be in (0, 1], got {self.confidence_below}")
        if not 0.0 <= self.audit_share <= 1.0:
            raise ValueError(f"audit_share must be in [0, 1], got {self.audit_share}")


def audit_selected(pixels: np.ndarray, share: float) -> bool:
    """Whether the image falls in the audit sample: its pixel hash, read as a number in [0, 1),
    is below ``share`` (deterministic, uniform over studies, independent of the model)."""
    if share <= 0.0:
        return False
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def review_reasons(confidence: float, pixels: np.ndarray, policy: ReviewPolicy) -> list[str]:
    """Reasons beyond the drifter checks to route one case to review (empty: none)."""
    reasons = []
    if confidence < policy.confidence_below:
        reasons.append(
            f"low confidence: {confidence:.2f} is below the review level "
            f"{policy.confidence_below:.2f}"
        )
    if audit_selected(pixels, policy.audit_share):
        reasons.append(
            f"audit sample: {policy.audit_share:.0%} of studies are reviewed to measure "
            "performance on this site's traffic"
        )
    return reasons
