"""Label-free performance estimates, and a verdict that does not take "no estimated drop" on trust.

``cbpe``, ``atc`` and ``iw_accuracy`` report ``reference accuracy - estimated window accuracy``
with a default threshold of ``tolerance`` (5 points). The details carry every estimate and,
where the window has labels, the realised values next to them. Their known failure modes:

* CBPE assumes the probabilities stay calibrated under the shift; a model that stays confidently
  wrong (inverted polarity, a strong LUT change) looks as accurate as ever.
* ATC assumes the ranking of confidences keeps meaning the same; it fails the same way.
* ``iw_accuracy`` (importance-weighted reference accuracy, weights from a domain classifier on
  the embeddings) does not read the window's confidences at all, but assumes covariate shift
  with overlapping support: P(label | embedding) unchanged, and window cases resembling some
  reference cases. When the weights collapse (small effective sample size) the window lies
  outside the reference and the estimate is marked unreliable.

``estimate_check`` combines them with input drift: an estimated drop is ``degraded``; large input
drift (or an unreliable weighting) with no estimated drop is ``unverified`` rather than ``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import Field

from radvigil.metrics import confusion_matrix
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
    confusion_metrics,
    domain_weights,
    expected_confusion,
    weighted_accuracy,
)
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.windows import UNLABELLED, WindowData


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


def _number(value: object) -> float:
    if not isinstance(value, int | float | np.number):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _realised(window: WindowData, n_classes: int) -> dict[str, object] | None:
    mask = window.labelled_mask()
    if window.probs is None or window.labels is None or not mask.any():
        return None
    labels, predicted = window.labels[mask], window.probs[mask].argmax(axis=1)
    return {
        **confusion_metrics(confusion_matrix(labels, predicted, n_classes)),
        "n": int(mask.sum()),
    }


def _inputs(
    profile: ReferenceProfile, window: WindowData
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | Skipped:
    """The reference's probabilities and labels and the window's probabilities, or a skip."""
    labelled = profile.labelled_reference()
    if labelled is None:
        return Skipped("the reference has no labels")
    if window.probs is None or len(window.probs) == 0:
        return Skipped("no probabilities in the window")
    return (*labelled, window.probs)


@register("cbpe")
class CBPEDetector(Detector):
    """Confidence-based performance estimation (accuracy, sensitivity, specificity) from probs."""

    resample_reference = True
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
        ref_probs, ref_labels, cur_probs = inputs
        n_classes = ref_probs.shape[1]
        reference = confusion_metrics(
            confusion_matrix(ref_labels, ref_probs.argmax(axis=1), n_classes)
        )
        estimate = confusion_metrics(expected_confusion(cur_probs))
        names = profile.class_names
        details: dict[str, object] = {
            "estimated": _named(estimate, names),
            "reference": _named(reference, names),
        }
        realised = _realised(window, n_classes)
        if realised is not None:
            details["realised"] = _named(realised, names)
        drop = _number(reference["accuracy"]) - _number(estimate["accuracy"])
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

    resample_reference = True
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
        ref_probs, ref_labels, cur_probs = inputs
        correct = ref_probs.argmax(axis=1) == ref_labels
        cut = atc_threshold(atc_scores(ref_probs, self.params.score), correct)
        estimate = atc_estimate(atc_scores(cur_probs, self.params.score), cut)
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


class IWParams(DetectorParams):
    tolerance: float = Field(0.05, ge=0, le=1, description="Accuracy drop flagged by default.")
    min_ess: float = Field(
        0.1, gt=0, le=1, description="Smallest effective sample share of a reliable estimate."
    )
    c: float = Field(0.1, gt=0, description="Inverse L2 penalty of the domain classifier.")


@register("iw_accuracy")
class IWAccuracyDetector(Detector):
    """Importance-weighted reference accuracy (domain-classifier weights on embeddings)."""

    resample_reference = True
    Params = IWParams
    params: IWParams

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
        if ref.embeddings is None or window.embeddings is None or len(window) < 5:
            return Skipped("no embeddings in the reference or window (or under 5 rows)")
        if ref.labels is None or ref.probs is None or not (ref.labels != UNLABELLED).any():
            return Skipped("the reference has no labels")
        mask = ref.labels != UNLABELLED
        correct = (ref.probs[mask].argmax(axis=1) == ref.labels[mask]).astype(np.float64)
        weights = domain_weights(ref.embeddings[mask], window.embeddings, c=self.params.c)
        estimate, ess = weighted_accuracy(correct, weights)
        reference = float(correct.mean())
        share = ess / len(correct)
        details: dict[str, object] = {
            "estimated_accuracy": estimate,
            "reference_accuracy": reference,
            "effective_sample_size": ess,
            "effective_share": share,
            "reliable": share >= self.params.min_ess,
        }
        realised = _realised(window, ref.probs.shape[1])
        if realised is not None:
            details["realised_accuracy"] = realised["accuracy"]
            details["n_labelled"] = realised["n"]
        return Measurement(
            statistic=reference - estimate,
            default_threshold=self.params.tolerance,
            n_reference=len(correct),
            effect_size=reference - estimate,
            details=details,
        )


Verdict = Literal["ok", "unverified", "degraded"]
VERDICT_LEVEL: dict[str, float] = {"ok": 0.0, "unverified": 1.0, "degraded": 2.0}


class EstimateCheckParams(DetectorParams):
    estimators: list[str] = Field(
        default_factory=lambda: ["cbpe", "atc", "iw_accuracy"],
        description="Label-free estimates whose flagged drop means 'degraded'.",
    )
    input_detectors: list[str] = Field(
        default_factory=lambda: ["image_stats", "mmd", "domain_classifier", "ood_rate"],
        description="Input drift detectors read for the size of the shift.",
    )
    large_drift: float = Field(
        2.0, gt=0, description="Input drift this many times its threshold is 'large'."
    )


@register("estimate_check")
class EstimateCheckDetector(Detector):
    """Verdict ok / unverified / degraded from the estimates and the size of input drift."""

    Params = EstimateCheckParams
    params: EstimateCheckParams
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
        estimates = {
            n: context[n] for n in self.params.estimators if n in context and not context[n].skipped
        }
        if not estimates:
            return Skipped(f"none of the estimators {self.params.estimators} ran on this window")
        dropped = sorted(n for n, r in estimates.items() if r.drift)
        sizes = {
            n: float(context[n].details.get("times_threshold") or 0.0)
            for n in self.params.input_detectors
            if n in context and not context[n].skipped
        }
        large = sorted(n for n, v in sizes.items() if v >= self.params.large_drift)
        iw = estimates.get("iw_accuracy")
        unreliable = iw is not None and iw.details.get("reliable") is False
        verdict: Verdict = "ok"
        why = "no estimated drop and no large input drift"
        if dropped:
            verdict, why = "degraded", f"estimated accuracy drop by {dropped}"
        elif large or unreliable:
            verdict = "unverified"
            why = (
                f"large input drift ({', '.join(large) or 'none'} at >= "
                f"{self.params.large_drift:g}x threshold"
                + ("; importance weights collapsed" if unreliable else "")
                + ") but no estimated drop: the estimates cannot vouch for this window"
            )
        return Measurement(
            statistic=VERDICT_LEVEL[verdict],
            default_threshold=0.5,
            n_reference=len(profile.reference),
            details={
                "verdict": verdict,
                "why": why,
                "estimated_drop": dropped,
                "input_drift_times_threshold": sizes,
                "large_input_drift": large,
            },
        )
