"""Label-free performance estimates: CBPE and ATC, flagged when accuracy is estimated to drop.

Both statistics are ``reference accuracy - estimated window accuracy`` with a default threshold
of ``tolerance`` (5 points). The details carry every estimate and, where the window has labels,
the realised values next to them, so estimates can be checked against truth as feedback arrives.
CBPE assumes calibrated probabilities (the model version's temperature scaling); ATC only needs
the ranking of confidences to be stable.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import Field

from radvigil.monitoring.detectors.base import (
    Detector,
    DetectorParams,
    Measurement,
    Skipped,
    register,
)
from radvigil.monitoring.estimators import (
    AtcScore,
    atc_estimate,
    atc_scores,
    atc_threshold,
    confusion,
    confusion_metrics,
    expected_confusion,
)
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.windows import WindowData


class CBPEParams(DetectorParams):
    tolerance: float = Field(0.05, ge=0, le=1, description="Accuracy drop flagged by default.")


class ATCParams(DetectorParams):
    tolerance: float = Field(0.05, ge=0, le=1, description="Accuracy drop flagged by default.")
    score: AtcScore = Field("max_confidence", description="max_confidence or negative_entropy.")


def _named(metrics: dict[str, object], names: tuple[str, ...]) -> dict[str, object]:
    """Per-class lists as {class: value} maps, for readable stored details."""
    return {
        k: dict(zip(names, v, strict=True)) if isinstance(v, list) else v
        for k, v in metrics.items()
    }


def _realised(window: WindowData, n_classes: int) -> dict[str, object] | None:
    mask = window.labelled_mask()
    if window.probs is None or not mask.any():
        return None
    labels, predicted = window.labels[mask], window.probs[mask].argmax(axis=1)
    return {**confusion_metrics(confusion(labels, predicted, n_classes)), "n": int(mask.sum())}


def _inputs(
    profile: ReferenceProfile, window: WindowData
) -> tuple[np.ndarray, np.ndarray] | Skipped:
    labelled = profile.labelled_reference()
    if labelled is None:
        return Skipped("the reference has no labels")
    if window.probs is None or len(window.probs) == 0:
        return Skipped("no probabilities in the window")
    return labelled


@register("cbpe")
class CBPEDetector(Detector):
    """Confidence-based performance estimation (accuracy, sensitivity, specificity) from probs."""

    Params = CBPEParams
    params: CBPEParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        inputs = _inputs(profile, window)
        if isinstance(inputs, Skipped):
            return inputs
        ref_probs, ref_labels = inputs
        n_classes = ref_probs.shape[1]
        reference = confusion_metrics(confusion(ref_labels, ref_probs.argmax(axis=1), n_classes))
        estimate = confusion_metrics(expected_confusion(window.probs))
        names = profile.class_names
        details = {"estimated": _named(estimate, names), "reference": _named(reference, names)}
        realised = _realised(window, n_classes)
        if realised is not None:
            details["realised"] = _named(realised, names)
        drop = float(reference["accuracy"]) - float(estimate["accuracy"])
        return Measurement(
            statistic=drop,
            default_threshold=self.params.tolerance,
            n_reference=len(ref_labels),
            effect_size=drop,
            details=details,
        )


@register("atc")
class ATCDetector(Detector):
    """Average thresholded confidence: share of window predictions above the reference-fit cut."""

    Params = ATCParams
    params: ATCParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        inputs = _inputs(profile, window)
        if isinstance(inputs, Skipped):
            return inputs
        ref_probs, ref_labels = inputs
        correct = ref_probs.argmax(axis=1) == ref_labels
        cut = atc_threshold(atc_scores(ref_probs, self.params.score), correct)
        estimate = atc_estimate(atc_scores(window.probs, self.params.score), cut)
        reference = float(correct.mean())
        details: dict[str, object] = {
            "estimated_accuracy": estimate,
            "reference_accuracy": reference,
            "score": self.params.score,
            "score_threshold": cut,
        }
        realised = _realised(window, ref_probs.shape[1])
        if realised is not None:
            details["realised_accuracy"] = realised["accuracy"]
            details["n_labelled"] = realised["n"]
        return Measurement(
            statistic=reference - estimate,
            default_threshold=self.params.tolerance,
            n_reference=len(ref_labels),
            effect_size=reference - estimate,
            details=details,
        )
