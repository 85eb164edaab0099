"""Performance on labelled feedback, and concept drift.

* ``performance``: sensitivity and specificity of ``positive_class`` (Wilson intervals) and its
  one-vs-rest AUC (bootstrap interval) on the labelled rows of the window. The statistic is how
  far the upper confidence bound of sensitivity or specificity sits below the reference value,
  so by default (tolerance 0) it flags a drop that the window's own uncertainty cannot explain.
* ``concept``: a one-sided two-proportion test that the window's error rate (decisions on
  ``positive_class`` that disagree with the label) exceeds the reference's; vetoed (reported,
  not flagged) when input detectors run on the same window (``input_detectors``) saw drift,
  because then the inputs, not the concept, changed.

With ``decision_threshold`` set, a case counts as positive when its ``positive_class``
probability reaches it (the model version's operating threshold) rather than by argmax.
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
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.stattests import (
    auc,
    bootstrap_auc_interval,
    proportion_increase_test,
    wilson_interval,
)
from radvigil.monitoring.windows import WindowData


class LabelledParams(DetectorParams):
    positive_class: int = Field(1, ge=0, description="Class index whose detection is scored.")
    decision_threshold: float | None = Field(
        None, gt=0, lt=1, description="Operating threshold; None = argmax decisions."
    )
    min_labels: int = Field(30, ge=2, description="Labelled cases needed to run.")


class PerformanceParams(LabelledParams):
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the intervals.")
    tolerance: float = Field(0.0, ge=0, le=1, description="Allowed drop below the CI bound.")
    n_boot: int = Field(200, ge=0, description="Bootstrap resamples for the AUC interval.")


class ConceptParams(LabelledParams):
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of the error-rate test.")
    input_detectors: list[str] = Field(
        default_factory=lambda: ["image_stats", "mmd"],
        description="Detectors whose drift explains an error increase away.",
    )


def _labelled(
    probs: np.ndarray | None, labels: np.ndarray | None, params: LabelledParams
) -> tuple[np.ndarray, np.ndarray] | Skipped:
    """(is positive, predicted positive) for the labelled rows, or why not."""
    if probs is None or labels is None:
        return Skipped("no labelled predictions")
    mask = labels >= 0
    if mask.sum() < params.min_labels:
        return Skipped(f"{int(mask.sum())} labelled cases; at least {params.min_labels} needed")
    probs, labels = probs[mask], labels[mask]
    k = params.positive_class
    if k >= probs.shape[1]:
        return Skipped(f"positive_class {k} is not among {probs.shape[1]} classes")
    if params.decision_threshold is None:
        decided = probs.argmax(axis=1) == k
    else:
        decided = probs[:, k] >= params.decision_threshold
    return labels == k, decided


def _rates(truth: np.ndarray, decided: np.ndarray) -> dict[str, int]:
    return {
        "tp": int((truth & decided).sum()),
        "positives": int(truth.sum()),
        "tn": int((~truth & ~decided).sum()),
        "negatives": int((~truth).sum()),
    }


@register("performance")
class PerformanceDetector(Detector):
    """Sensitivity/specificity (Wilson CIs) and AUC (bootstrap CI) on labelled feedback."""

    Params = PerformanceParams
    params: PerformanceParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        ref_rows = _labelled(profile.reference.probs, profile.reference.labels, self.params)
        cur_rows = _labelled(window.probs, window.labels, self.params)
        if isinstance(ref_rows, Skipped):
            return ref_rows
        if isinstance(cur_rows, Skipped):
            return cur_rows
        ref, cur = _rates(*ref_rows), _rates(*cur_rows)
        level = self.params.confidence
        gaps: list[tuple[float, float]] = []
        details: dict[str, Any] = {}
        for metric, hits, total in (
            ("sensitivity", "tp", "positives"),
            ("specificity", "tn", "negatives"),
        ):
            reference = ref[hits] / max(ref[total], 1)
            value = cur[hits] / cur[total] if cur[total] else float("nan")
            low, high = wilson_interval(cur[hits], cur[total], level)
            details[metric] = {
                "value": value,
                "ci": [low, high],
                "reference": reference,
                "n": cur[total],
            }
            if cur[total]:
                gaps.append((reference - high, reference - value))
        if not gaps:
            return Skipped("labelled cases hold neither positives nor negatives")
        k = self.params.positive_class
        probs, labels = window.probs, window.labels
        if probs is None or labels is None:  # _labelled found labelled rows, so both exist
            return Skipped("the window has no labelled probabilities")
        mask = labels >= 0
        scores, truth = probs[mask, k], labels[mask] == k
        interval = (float("nan"), float("nan"))
        if null and self.params.n_boot:
            interval = bootstrap_auc_interval(truth, scores, self.params.n_boot, level, rng)
        details["auc"] = {"value": auc(truth, scores), "ci": list(interval)}
        details["n_labelled"] = int(mask.sum())
        return Measurement(
            statistic=max(g[0] for g in gaps),
            default_threshold=self.params.tolerance,
            n_reference=ref["positives"] + ref["negatives"],
            effect_size=max(g[1] for g in gaps),
            details=details,
        )


@register("concept")
class ConceptDriftDetector(Detector):
    """Error rate up vs the reference (two-proportion test) while input detectors see no drift."""

    Params = ConceptParams
    params: ConceptParams
    uses_context = True

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        ref_rows = _labelled(profile.reference.probs, profile.reference.labels, self.params)
        cur_rows = _labelled(window.probs, window.labels, self.params)
        if isinstance(ref_rows, Skipped):
            return ref_rows
        if isinstance(cur_rows, Skipped):
            return cur_rows
        ref_errors = int((ref_rows[0] != ref_rows[1]).sum())
        cur_errors = int((cur_rows[0] != cur_rows[1]).sum())
        n_ref, n_cur = len(ref_rows[0]), len(cur_rows[0])
        diff, p_value, critical = proportion_increase_test(
            ref_errors, n_ref, cur_errors, n_cur, self.params.alpha
        )
        seen = {n: context[n] for n in self.params.input_detectors if n in context}
        drifted = sorted(n for n, r in seen.items() if r.drift)
        veto = None
        if drifted:
            veto = (
                f"input drift seen by {drifted}: errors that rise here follow a covariate "
                "shift, not a concept change"
            )
        return Measurement(
            statistic=diff,
            default_threshold=critical,
            n_reference=n_ref,
            p_value=p_value,
            effect_size=diff,
            details={
                "error_rate": cur_errors / n_cur,
                "reference_error_rate": ref_errors / n_ref,
                "input_detectors_run": sorted(seen),
                "input_drift": drifted,
            },
            veto=veto,
        )
