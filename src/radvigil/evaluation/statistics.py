"""Statistics (weights -> named metric arrays) shared by the evaluation, subgroups and gates.

Building them in one place is what keeps a number in the report, in a subgroup row and in a gate
row identical for the same model and items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from radvigil import metrics
from radvigil.evaluation.bootstrap import Statistic
from radvigil.evaluation.decision import flag_findings, predict_at_thresholds

RATES = ("sensitivity", "specificity", "ppv", "npv", "f1")
FINDING_METRICS = (*RATES, "auc", "ece")


def finding_statistic(
    y: np.ndarray,
    probs: np.ndarray,
    finding_idx: np.ndarray,
    thresholds: np.ndarray,
    n_bins: int = 10,
) -> Statistic:
    """Per finding (flag rule, see :mod:`decision`): rates, AUC, ECE; plus overall accuracy.

    Outputs: each of :data:`FINDING_METRICS` as (resamples, findings), ``accuracy`` as
    (resamples,) under the thresholds decision rule.
    """
    positive = y[:, None] == finding_idx[None, :]
    flagged = flag_findings(probs, finding_idx, thresholds)
    correct = (predict_at_thresholds(probs, finding_idx, thresholds) == y).astype(float)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        out = metrics.binary_rates(*metrics.flag_counts(positive, flagged, weights))
        scores = probs[:, finding_idx]
        out["auc"] = _per_column(metrics.auc, positive, scores, weights)
        out["ece"] = _per_column(
            lambda p, s, w: metrics.expected_calibration_error(p, s, w, n_bins),
            positive,
            scores,
            weights,
        )
        out["accuracy"] = metrics.safe_divide(weights @ correct, weights.sum(axis=1))
        return out

    return statistic


def class_statistic(
    y: np.ndarray, probs: np.ndarray, predictions: Mapping[str, np.ndarray], n_bins: int = 10
) -> Statistic:
    """Per class (one-vs-rest) rates for each decision rule, AUC and ECE, with averages.

    Outputs, for each rule name ``r`` in ``predictions``: ``r.accuracy`` (resamples,),
    ``r.<rate>`` (resamples, classes), ``r.macro.<rate>`` and ``r.weighted.<rate>``
    (resamples,); and ``auc``/``ece`` per class with ``macro.auc``, ``weighted.auc``,
    ``macro.ece``.
    """
    n_classes = probs.shape[1]
    positive = y[:, None] == np.arange(n_classes)[None, :]

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        support = weights @ positive.astype(float)
        for rule, pred in predictions.items():
            confusion = metrics.confusion_counts(y, pred, n_classes, weights)
            out[f"{rule}.accuracy"] = metrics.accuracy(confusion)
            for name, values in metrics.class_rates(confusion).items():
                if name == "support":
                    continue
                out[f"{rule}.{name}"] = values
                out[f"{rule}.macro.{name}"] = metrics.macro_average(values)
                out[f"{rule}.weighted.{name}"] = metrics.weighted_average(values, support)
        out["auc"] = _per_column(metrics.auc, positive, probs, weights)
        out["ece"] = _per_column(
            lambda p, s, w: metrics.expected_calibration_error(p, s, w, n_bins),
            positive,
            probs,
            weights,
        )
        out["macro.auc"] = metrics.macro_average(out["auc"])
        out["weighted.auc"] = metrics.weighted_average(out["auc"], support)
        out["macro.ece"] = metrics.macro_average(out["ece"])
        return out

    return statistic


def _per_column(
    function: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    positive: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    columns = [function(positive[:, j], scores[:, j], weights) for j in range(scores.shape[1])]
    return np.stack(columns, axis=1)
