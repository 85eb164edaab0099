"""Drift of the model's outputs: BBSD on the softmax, and BBSE label-shift estimation.

* ``bbsd`` (black-box shift detection, Rabanser et al. 2019): a KS test per class probability
  (one column for binary tasks, whose two columns carry the same information), Bonferroni
  across classes; statistic ``-log10`` of the smallest adjusted p-value.
* ``label_shift``: BBSE estimate of the window's class prevalence from its predicted-class mix
  and the reference confusion matrix; the statistic is the total variation distance from the
  reference prevalence (half the L1 distance), flagged above ``max_shift``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field
from scipy import stats

from radvigil.metrics import confusion_matrix
from radvigil.monitoring.detectors.base import (
    Detector,
    DetectorParams,
    Measurement,
    Skipped,
    register,
)
from radvigil.monitoring.estimators import bbse_prevalence
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.stattests import adjust_pvalues, neg_log10
from radvigil.monitoring.windows import WindowData


class BBSDParams(DetectorParams):
    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise level across classes.")


class LabelShiftParams(DetectorParams):
    max_shift: float = Field(
        0.1, gt=0, le=1, description="Default threshold on the prevalence total variation."
    )


def _probs(
    profile: ReferenceProfile, window: WindowData
) -> Skipped | tuple[np.ndarray, np.ndarray]:
    """The reference's and the window's probabilities, or why the detector must skip."""
    ref, cur = profile.reference.probs, window.probs
    if ref is None or cur is None or len(cur) < 5:
        return Skipped("needs probabilities for the reference and at least 5 in the window")
    return ref, cur


@register("bbsd")
class BBSDDetector(Detector):
    """KS test per class probability, Bonferroni across classes (black-box shift detection)."""

    Params = BBSDParams
    params: BBSDParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        probs = _probs(profile, window)
        if isinstance(probs, Skipped):
            return probs
        ref, cur = probs
        columns = [1] if ref.shape[1] == 2 else list(range(ref.shape[1]))
        tests = [stats.ks_2samp(ref[:, k], cur[:, k]) for k in columns]
        adjusted = adjust_pvalues(np.array([t.pvalue for t in tests]), "bonferroni")
        per_class = {
            profile.class_names[k]: {"ks": float(t.statistic), "p_adjusted": float(a)}
            for k, t, a in zip(columns, tests, adjusted, strict=True)
        }
        return Measurement(
            statistic=neg_log10(float(adjusted.min())),
            default_threshold=neg_log10(self.params.alpha),
            n_reference=len(ref),
            p_value=float(adjusted.min()),
            effect_size=float(max(t.statistic for t in tests)),
            details={"classes": per_class},
        )


@register("label_shift")
class LabelShiftDetector(Detector):
    """BBSE estimate of the window's class prevalence; statistic = TV distance to the reference."""

    Params = LabelShiftParams
    params: LabelShiftParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        probs = _probs(profile, window)
        labelled = profile.labelled_reference()
        if isinstance(probs, Skipped):
            return probs
        if labelled is None:
            return Skipped("the reference has no labels")
        cur = probs[1]
        ref_probs, ref_labels = labelled
        n_classes = ref_probs.shape[1]
        joint = confusion_matrix(ref_labels, ref_probs.argmax(axis=1), n_classes) / len(ref_labels)
        share = np.bincount(cur.argmax(axis=1), minlength=n_classes) / len(cur)
        estimate = bbse_prevalence(joint, share)
        prior = joint.sum(axis=1)
        distance = 0.5 * float(np.abs(estimate - prior).sum())
        names = profile.class_names
        details: dict[str, Any] = {
            "estimated_prevalence": dict(zip(names, estimate.tolist(), strict=True)),
            "reference_prevalence": dict(zip(names, prior.tolist(), strict=True)),
            "predicted_share": dict(zip(names, share.tolist(), strict=True)),
            "confusion_condition": float(np.linalg.cond(joint)),
        }
        mask = window.labelled_mask()
        if mask.any() and window.labels is not None:
            true = np.bincount(window.labels[mask], minlength=n_classes) / mask.sum()
            details["labelled_prevalence"] = dict(zip(names, true.tolist(), strict=True))
            details["n_labelled"] = int(mask.sum())
        return Measurement(
            statistic=distance,
            default_threshold=self.params.max_shift,
            n_reference=len(ref_labels),
            effect_size=distance,
            details=details,
        )
