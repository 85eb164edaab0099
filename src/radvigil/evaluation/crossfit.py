"""An operating threshold fitted on a site's labelled cases, cross-fitted by patient.

A threshold picked on the same cases that then judge it looks better than it is: on a few dozen
labels, the cut reaching sensitivity 0.97 in-sample reaches it by construction. Cross-fitting
keeps the two apart: the patients are split into k folds; each fold's cases are flagged with the
threshold chosen on the other folds, and the pooled out-of-fold rates are the honest estimate of
what the threshold fitted on all the cases will do on the next patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold

from radvigil.errors import DataError
from radvigil.metrics import threshold_for_sensitivity


@dataclass(frozen=True)
class CrossFitThreshold:
    """The threshold fitted on every labelled case and its out-of-fold rates.

    ``in_sample_*`` are the rates on the cases that chose it (optimistic, shown for contrast).
    """

    threshold: float
    sensitivity: float
    specificity: float
    in_sample_sensitivity: float
    in_sample_specificity: float
    folds: int
    n: int


def _rates(positive: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    sens = float(flagged[positive].mean()) if positive.any() else float("nan")
    spec = float((~flagged[~positive]).mean()) if (~positive).any() else float("nan")
    return sens, spec


def crossfit_threshold(
    positive: np.ndarray,
    scores: np.ndarray,
    patients: np.ndarray,
    *,
    target_sensitivity: float = 0.97,
    folds: int = 5,
) -> CrossFitThreshold:
    """Fit the screening threshold (the largest reaching ``target_sensitivity``) on all cases,
    and estimate its rates with ``folds`` patient-grouped folds.

    Raises:
        DataError: fewer patients than folds, or a fold's complement holds no positive case.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    patients = np.asarray(patients)
    if np.unique(patients).size < folds:
        raise DataError(
            f"cross-fitting needs at least {folds} patients, got {np.unique(patients).size}"
        )
    flagged = np.zeros_like(positive)
    for fit, judge in GroupKFold(n_splits=folds).split(scores, groups=patients):
        if not positive[fit].any():
            raise DataError("a cross-fitting fold leaves no positive case to fit a threshold on")
        cut = threshold_for_sensitivity(positive[fit], scores[fit], target_sensitivity)
        flagged[judge] = scores[judge] >= cut
    threshold = threshold_for_sensitivity(positive, scores, target_sensitivity)
    sens, spec = _rates(positive, flagged)
    in_sens, in_spec = _rates(positive, scores >= threshold)
    return CrossFitThreshold(
        threshold=float(threshold),
        sensitivity=sens,
        specificity=spec,
        in_sample_sensitivity=in_sens,
        in_sample_specificity=in_spec,
        folds=folds,
        n=int(positive.size),
    )
