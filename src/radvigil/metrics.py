"""Classification metrics as pure functions over arrays: the one definition of each metric that
training, evaluation, gates, monitoring and the dashboard share (numpy only, the bottom layer).
They are ready for the vectorised bootstrap.

Every count-based metric takes a ``weights`` matrix of shape (resamples, items): row ``b`` says
how many times each item appears in resample ``b``. A row of ones is the plain point estimate, so
the point estimate and its bootstrap distribution come from the same code. Undefined ratios
(e.g. sensitivity with no positives) are NaN, never a silent 0.

Conventions: a finding is positive when its score is >= the threshold; AUC counts ties as 1/2;
calibration uses ``n_bins`` equal-width bins over [0, 1], bin ``i`` holding scores in
[i/n, (i+1)/n) and the last bin also holding 1.0; ECE is the count-weighted mean of
|observed frequency - mean predicted probability| over the non-empty bins.
"""

from __future__ import annotations

import numpy as np

from radvigil.errors import ConfigError, DataError

_EPS = 1e-12


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio, NaN where the denominator is 0."""
    num, den = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_counts(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray
) -> np.ndarray:
    """Weighted confusion matrices (resamples, true class, predicted class)."""
    codes = y_true * n_classes + y_pred
    onehot = np.zeros((codes.size, n_classes * n_classes))
    onehot[np.arange(codes.size), codes] = 1.0
    return (weights @ onehot).reshape(-1, n_classes, n_classes)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``M[t, p]`` of items of true class ``t`` predicted as ``p`` (rows are the truth)."""
    flat = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def binary_rates(
    tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray
) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV, NPV and F1 from the four cells of a 2x2 table."""
    return {
        "sensitivity": safe_divide(tp, tp + fn),
        "specificity": safe_divide(tn, tn + fp),
        "ppv": safe_divide(tp, tp + fp),
        "npv": safe_divide(tn, tn + fn),
        "f1": safe_divide(2 * tp, 2 * tp + fp + fn),
    }


def class_rates(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest rates per class (resamples, classes) from confusion matrices, plus support."""
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    support = confusion.sum(axis=2)
    fn = support - tp
    fp = confusion.sum(axis=1) - tp
    tn = confusion.sum(axis=(1, 2))[:, None] - tp - fn - fp
    return {**binary_rates(tp, fn, fp, tn), "support": support}


def accuracy(confusion: np.ndarray) -> np.ndarray:
    """Share of items on the diagonal, per resample."""
    return safe_divide(np.trace(confusion, axis1=1, axis2=2), confusion.sum(axis=(1, 2)))


def macro_average(values: np.ndarray) -> np.ndarray:
    """Unweighted mean over classes (last axis), ignoring undefined classes."""
    defined = ~np.isnan(values)
    return safe_divide(np.where(defined, values, 0.0).sum(axis=-1), defined.sum(axis=-1))


def weighted_average(values: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Support-weighted mean over classes (last axis), ignoring undefined classes."""
    defined = ~np.isnan(values)
    weight = np.where(defined, support, 0.0)
    return safe_divide((np.where(defined, values, 0.0) * weight).sum(axis=-1), weight.sum(axis=-1))


def flag_counts(
    positive: np.ndarray, flagged: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted TP, FN, FP, TN (each resamples x columns) for boolean (items, columns) inputs."""
    cells = np.concatenate(
        [positive & flagged, positive & ~flagged, ~positive & flagged, ~positive & ~flagged],
        axis=1,
    )
    counts = weights @ cells.astype(float)
    tp, fn, fp, tn = np.split(counts, 4, axis=1)
    return tp, fn, fp, tn


def auc(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC per resample: P(score of a positive > score of a negative), ties 1/2.

    The items are sorted once; each resample then needs only a cumulative sum, which is what
    makes thousands of bootstrap AUCs cheap.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores, is_pos = scores[order], positive[order]
    n = sorted_scores.size
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], n]
    group = np.repeat(np.arange(starts.size), ends - starts)
    w = weights[:, order]
    neg_weight = np.where(is_pos, 0.0, w)
    cumulative = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(neg_weight, axis=1)], axis=1)
    pos_idx = np.flatnonzero(is_pos)
    below = cumulative[:, starts[group[pos_idx]]]
    tied = cumulative[:, ends[group[pos_idx]]] - below
    pos_weight = w[:, pos_idx]
    wins = (pos_weight * (below + 0.5 * tied)).sum(axis=1)
    return safe_divide(wins, pos_weight.sum(axis=1) * neg_weight.sum(axis=1))


def roc_points(positive: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """ROC curve: FPR, TPR at every distinct threshold (descending), starting at (0, 0)."""
    tps, fps, thresholds = _cumulative_by_threshold(positive, scores)
    first = np.nextafter(thresholds[0], np.inf)
    return {
        "fpr": safe_divide(np.r_[0.0, fps], fps[-1]),
        "tpr": safe_divide(np.r_[0.0, tps], tps[-1]),
        "thresholds": np.r_[first, thresholds],
    }


def pr_points(positive: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """Precision-recall curve at every distinct threshold (descending) and average precision."""
    tps, fps, thresholds = _cumulative_by_threshold(positive, scores)
    recall = safe_divide(tps, tps[-1])
    precision = safe_divide(tps, tps + fps)
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {
        "recall": recall,
        "precision": precision,
        "thresholds": thresholds,
        "average_precision": np.array(average_precision),
    }


def _cumulative_by_threshold(
    positive: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-scores, kind="stable")
    sorted_scores, is_pos = scores[order], positive[order].astype(float)
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tps = np.cumsum(is_pos)[last]
    fps = (last + 1) - tps
    return tps, fps, sorted_scores[last]


def bin_index(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each score in [0, 1]; 1.0 falls in the last bin."""
    return np.clip((scores * n_bins).astype(int), 0, n_bins - 1)


def calibration_sums(
    positive: np.ndarray, scores: np.ndarray, weights: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin and resample: item count, sum of scores, number of positives."""
    onehot = np.zeros((scores.size, n_bins))
    onehot[np.arange(scores.size), bin_index(scores, n_bins)] = 1.0
    stacked = np.concatenate([onehot, onehot * scores[:, None], onehot * positive[:, None]], axis=1)
    count, score_sum, pos_sum = np.split(weights @ stacked, 3, axis=1)
    return count, score_sum, pos_sum


def expected_calibration_error(
    positive: np.ndarray, scores: np.ndarray, weights: np.ndarray, n_bins: int = 10
) -> np.ndarray:
    """ECE per resample (see the module docstring for the binning)."""
    count, score_sum, pos_sum = calibration_sums(positive, scores, weights, n_bins)
    return safe_divide(np.abs(pos_sum - score_sum).sum(axis=1), count.sum(axis=1))


def reliability_bins(
    positive: np.ndarray, scores: np.ndarray, n_bins: int = 10
) -> dict[str, np.ndarray]:
    """Reliability diagram data: bin edges, counts, mean predicted and observed frequency."""
    count, score_sum, pos_sum = calibration_sums(
        positive, scores, np.ones((1, scores.size)), n_bins
    )
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1),
        "count": count[0],
        "mean_predicted": safe_divide(score_sum, count)[0],
        "observed": safe_divide(pos_sum, count)[0],
    }


def threshold_for_sensitivity(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The largest threshold whose sensitivity on (``y``, ``p``) is >= ``target``.

    Args:
        y: 1 (or True) for items with the finding, 0 otherwise.
        p: the model's probability of the finding.
        target: sensitivity to reach, in (0, 1].

    Raises:
        ConfigError: ``target`` is outside (0, 1].
        DataError: no item has the finding.
    """
    _, tpr, thresholds = _roc(y, p, target, "sensitivity")
    return float(thresholds[np.argmax(tpr >= target - _EPS)])


def threshold_for_specificity(y: np.ndarray, p: np.ndarray, target: float) -> float:
    """The smallest threshold whose specificity on (``y``, ``p``) is >= ``target``."""
    fpr, _, thresholds = _roc(y, p, target, "specificity")
    meets = np.flatnonzero(1.0 - fpr >= target - _EPS)
    return float(thresholds[meets[-1]])


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (the largest one on ties)."""
    fpr, tpr, thresholds = _roc(y, p, 0.5, "Youden J")
    return float(thresholds[np.argmax(tpr - fpr)])


def _roc(
    y: np.ndarray, p: np.ndarray, target: float, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"target {what} must be in (0, 1], got {target}")
    positive = np.asarray(y).astype(bool)
    if positive.size == 0 or positive.all() or not positive.any():
        raise DataError(
            f"cannot choose a threshold for {what}: the set needs items with and without the "
            f"finding (got {int(positive.sum())} of {positive.size} positive)"
        )
    curve = roc_points(positive, np.asarray(p, dtype=float))
    return curve["fpr"], curve["tpr"], curve["thresholds"]
