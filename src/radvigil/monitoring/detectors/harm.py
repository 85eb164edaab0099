"""``harm``: rank a shifted window by what it costs, not only by how different it is.

Runs after the other detectors of a window and reads their results: which detector is furthest
beyond its threshold and which image statistic moved most (``image_stats``'s largest shift in
reference SDs). Its statistic is the largest estimated fall of sensitivity or specificity at the
served threshold (label-free, CBPE-style: :func:`radvigil.monitoring.harm.expected_rates`),
and it names the suite perturbation whose signature explains the window's processing
statistics, so an alert reads "looks like strong sharpening, estimated specificity -0.40".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field

from radvigil.monitoring.detectors.base import (
    Detector,
    DetectorParams,
    Measurement,
    Skipped,
    register,
)
from radvigil.monitoring.harm import (
    expected_rates,
    match_signature,
    median_change,
    reference_scale,
)
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.windows import WindowData


class HarmParams(DetectorParams):
    positive_class: int = Field(1, ge=0, description="Class index whose detection is scored.")
    decision_threshold: float | None = Field(
        None, gt=0, lt=1, description="Served operating threshold; None = argmax decisions."
    )
    tolerance: float = Field(
        0.10, ge=0, le=1, description="Estimated sensitivity/specificity fall flagged."
    )


def _moved_most(context: Mapping[str, DetectorResult]) -> dict[str, Any]:
    """The detector furthest beyond its threshold, and the image statistic that moved most."""
    out: dict[str, Any] = {}
    ranked = [
        (float(r.details["times_threshold"]), name)
        for name, r in context.items()
        if not r.skipped and isinstance(r.details.get("times_threshold"), int | float)
    ]
    if ranked:
        times, name = max(ranked)
        out["detector"] = {"name": name, "times_threshold": times}
    columns = (context.get("image_stats") or DetectorResult(name="")).details.get("columns", {})
    effects = [
        (float(v["effect"]), c) for c, v in columns.items() if isinstance(v.get("effect"), float)
    ]
    if effects:
        effect, column = max(effects)
        out["statistic"] = {"name": column, "reference_sds": effect}
    return out


@register("harm")
class HarmDetector(Detector):
    """Estimated sensitivity/specificity change at the served threshold, and its likely cause."""

    Params = HarmParams
    params: HarmParams
    uses_context = True
    calibrated = False

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        ref = profile.reference
        if window.probs is None or len(window.probs) == 0 or ref.probs is None:
            return Skipped("no probabilities in the window or the reference")
        k, cut = self.params.positive_class, self.params.decision_threshold
        if k >= window.probs.shape[1]:
            return Skipped(f"positive_class {k} is not among {window.probs.shape[1]} classes")
        estimated = expected_rates(window.probs, k, cut)
        reference = expected_rates(ref.probs, k, cut)
        change = {m: estimated[m] - reference[m] for m in estimated}
        worst = min(change, key=lambda m: change[m] if np.isfinite(change[m]) else np.inf)
        details: dict[str, Any] = {
            "positive_class": profile.class_names[k],
            "decision_threshold": cut,
            "estimated": estimated,
            "reference_estimated": reference,
            "change": change,
            "worst_metric": worst,
            "moved_most": _moved_most(context),
        }
        match = None
        if ref.stats is not None and window.stats is not None:
            moved = median_change(ref.stats, window.stats)
            match = match_signature(moved, reference_scale(ref.stats))
            details["processing_change"] = moved
        details["explained_by"] = None if match is None else match.model_dump()
        details["summary"] = _summary(change[worst], worst, match.perturbation if match else None)
        drop = -change[worst] if np.isfinite(change[worst]) else 0.0
        return Measurement(
            statistic=drop,
            default_threshold=self.params.tolerance,
            n_reference=len(ref.probs),
            effect_size=drop,
            details=details,
        )


def _summary(change: float, metric: str, perturbation: str | None) -> str:
    """One line a clinician reads: what it looks like, and the estimated change."""
    cause = (
        f"looks like {perturbation}"
        if perturbation
        else "no perturbation of the robustness suite explains it"
    )
    return f"{cause}, estimated {metric} {change:+.2f} at the served threshold"
