"""Operating thresholds: pick them on validation, check them on test.

Three operating points per finding: *screening* (the largest threshold reaching a target
sensitivity, e.g. 0.98), *balanced* (maximum Youden J = sensitivity + specificity - 1) and
*high specificity* (the smallest threshold reaching a target specificity, e.g. 0.95). A finding
is flagged when its probability is >= the threshold; thresholds are observed scores, so the
validation rates are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radvigil import metrics
from radvigil.evaluation.bootstrap import estimate
from radvigil.evaluation.result import Estimate, EvaluationOptions, OperatingPoint, finite
from radvigil.metrics import (
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)


def operating_points(
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    findings: Sequence[str],
    finding_idx: np.ndarray,
    options: EvaluationOptions,
) -> list[OperatingPoint]:
    """Screening, balanced and high-specificity thresholds per finding, validated on test.

    Args:
        validation: encoded labels and probabilities of the validation set.
        test: encoded labels and probabilities of the test set.
        findings: finding names, in the order of ``finding_idx``.
        finding_idx: column of each finding in the probability matrices.
        options: targets, bootstrap size, seed and interval level.
    """
    (y_val, p_val), (y_test, p_test) = validation, test
    specificity = options.specificity_target
    chosen: list[tuple[str, str, float | None, float]] = []
    for name, column in zip(findings, finding_idx, strict=True):
        positive, scores = y_val == column, p_val[:, column]
        target = options.sensitivity_target(name)
        chosen += [
            (name, "screening", target, threshold_for_sensitivity(positive, scores, target)),
            (name, "balanced", None, youden_threshold(positive, scores)),
            (
                name,
                "high_specificity",
                specificity,
                threshold_for_specificity(positive, scores, specificity),
            ),
        ]

    columns = np.array([finding_idx[list(findings).index(name)] for name, *_ in chosen])
    cuts = np.array([threshold for *_, threshold in chosen])
    val_rates = _rates(y_val, p_val, columns, cuts, np.ones((1, y_val.size)))
    test_rates = estimate(
        lambda weights: _rates(y_test, p_test, columns, cuts, weights),
        y_test.size,
        n_resamples=options.n_resamples,
        seed=options.seed,
        level=options.ci_level,
    )
    points = []
    for j, (name, mode, goal, threshold) in enumerate(chosen):
        sens, spec = test_rates["sensitivity"], test_rates["specificity"]
        points.append(
            OperatingPoint(
                finding=name,
                mode=mode,
                target=goal,
                threshold=threshold,
                validation_sensitivity=finite(val_rates["sensitivity"][0, j]),
                validation_specificity=finite(val_rates["specificity"][0, j]),
                test_sensitivity=Estimate.of(sens.value[j], sens.low[j], sens.high[j]),
                test_specificity=Estimate.of(spec.value[j], spec.low[j], spec.high[j]),
            )
        )
    return points


def _rates(
    y: np.ndarray, probs: np.ndarray, columns: np.ndarray, cuts: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    positive = y[:, None] == columns[None, :]
    return metrics.binary_rates(*metrics.flag_counts(positive, probs[:, columns] >= cuts, weights))
