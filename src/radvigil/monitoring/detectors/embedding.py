"""Multivariate drift of the PCA-reduced embeddings: MMD, a domain classifier, the OOD rate.

* ``mmd``: unbiased MMD^2 with an RBF kernel (median-heuristic bandwidth on the pooled sample)
  and an exact permutation test (see :mod:`radvigil.monitoring.kernels`).
* ``domain_classifier``: a linear classifier told to separate reference from window rows; the
  statistic is its cross-validated (out-of-fold) AUC, tested by re-running the cross-validation
  on permuted labels (see :mod:`radvigil.monitoring.discriminant`).
* ``ood_rate``: share of window cases whose Mahalanobis OOD score passes the profile's drifter
  threshold, tested with a beta-binomial: the threshold is an empirical quantile of a few hundred
  reference scores, so the unshifted per-case rate is itself uncertain (a binomial test at the
  nominal 1 % alarmed on 27-37 % of unshifted windows of 100-200). The test is exact under that
  null, so the detector is not recalibrated on the reference rows that set the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field
from scipy import stats

from radvigil.monitoring.detectors.base import (
    Detector,
    DetectorParams,
    Measurement,
    Skipped,
    register,
)
from radvigil.monitoring.discriminant import domain_classifier_test
from radvigil.monitoring.kernels import mmd_test
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.windows import WindowData


class MMDParams(DetectorParams):
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of the permutation test.")
    n_permutations: int = Field(
        200, ge=0, description="Permutations; 0 skips the test (then calibrate the threshold)."
    )
    max_reference: int = Field(1000, ge=10, description="Reference rows used (random subset).")


class DomainClassifierParams(DetectorParams):
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of the permutation test.")
    folds: int = Field(5, ge=2, description="Cross-validation folds for out-of-fold scores.")
    ridge: float = Field(1.0, gt=0, description="L2 penalty of the linear discriminant.")
    n_permutations: int = Field(
        200, ge=0, description="Permutations; 0 skips the test (then calibrate the threshold)."
    )
    max_reference: int = Field(1000, ge=10, description="Reference rows used (random subset).")


class OODRateParams(DetectorParams):
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of the beta-binomial test.")


def _embeddings(
    profile: ReferenceProfile, window: WindowData, cap: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | Skipped:
    ref, cur = profile.reference.embeddings, window.embeddings
    if ref is None or cur is None:
        return Skipped("no embeddings in the " + ("reference" if ref is None else "window"))
    if len(cur) < 5:
        return Skipped(f"window has {len(cur)} embeddings; at least 5 needed")
    if len(ref) > cap:
        ref = ref[rng.choice(len(ref), cap, replace=False)]
    return ref, cur


@register("mmd")
class MMDDetector(Detector):
    """RBF-kernel MMD^2 on reduced embeddings with an exact permutation test."""

    Params = MMDParams
    params: MMDParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        samples = _embeddings(profile, window, self.params.max_reference, rng)
        if isinstance(samples, Skipped):
            return samples
        ref, cur = samples
        permutations = self.params.n_permutations if null else 0
        test = mmd_test(ref, cur, permutations, self.params.alpha, rng)
        return Measurement(
            statistic=test.statistic,
            default_threshold=test.critical_value if test.critical_value is not None else 0.0,
            n_reference=len(ref),
            p_value=test.p_value,
            effect_size=float(np.sqrt(max(test.statistic, 0.0))),
            details={"bandwidth": test.bandwidth, "n_permutations": permutations},
        )


@register("domain_classifier")
class DomainClassifierDetector(Detector):
    """Cross-validated AUC of a linear classifier separating window from reference, permuted."""

    Params = DomainClassifierParams
    params: DomainClassifierParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        samples = _embeddings(profile, window, self.params.max_reference, rng)
        if isinstance(samples, Skipped):
            return samples
        ref, cur = samples
        permutations = self.params.n_permutations if null else 0
        test = domain_classifier_test(
            ref,
            cur,
            folds=self.params.folds,
            ridge=self.params.ridge,
            n_permutations=permutations,
            alpha=self.params.alpha,
            rng=rng,
        )
        return Measurement(
            statistic=test.auc,
            default_threshold=test.critical_value if test.critical_value is not None else 0.5,
            n_reference=len(ref),
            p_value=test.p_value,
            effect_size=test.auc - 0.5,
            details={"folds": test.folds, "n_permutations": permutations},
            null_centre=0.5,
        )


@register("ood_rate")
class OODRateDetector(Detector):
    """Share of window cases beyond the profile's OOD threshold vs its unshifted rate."""

    Params = OODRateParams
    params: OODRateParams
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
        if window.ood_scores is None:
            return Skipped("no embeddings or OOD scores in the window")
        m = len(window.ood_scores)
        hits = int(np.count_nonzero(window.ood_scores > profile.ood.threshold))
        prior = profile.ood.exceedance_prior()
        chance: Any  # a frozen scipy distribution: binomial, or beta-binomial with the prior
        if prior is None:
            expected = 1.0 - profile.ood.quantile
            chance = stats.binom(m, expected)
        else:
            expected = prior[0] / (prior[0] + prior[1])
            chance = stats.betabinom(m, *prior)
        return Measurement(
            statistic=hits / m,
            default_threshold=float(chance.isf(self.params.alpha)) / m,
            n_reference=len(profile.reference),
            p_value=float(chance.sf(hits - 1)),
            effect_size=hits / m - expected,
            null_centre=expected,
            details={
                "drifters": hits,
                "nominal_rate": 1.0 - profile.ood.quantile,
                "expected_rate": expected,
                "ood_threshold": profile.ood.threshold,
                "threshold_from_scores": profile.ood.n_fitted or None,
            },
        )
