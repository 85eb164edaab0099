"""Domain-classifier two-sample test: cross-validated AUC of a linear classifier, permutation null.

A classifier is asked to tell window rows from reference rows; its out-of-fold AUC is ~0.5 when
they come from one distribution. Cross-validated AUCs are over-dispersed relative to the
Mann-Whitney null (about 1.45x its standard deviation in our checks, where a normal-theory
threshold at 5% raised 7-13% false alarms), hence a permutation test: labels are permuted and the
*whole* cross-validation re-run, folds assigned independently of labels. The classifier is a
ridge least-squares discriminant (the Fisher/LDA direction for two classes) rather than a
logistic regression, because its fit is one linear solve per fold for all permutations at once:
200 permutations of 1000 vs 100 rows take ~0.1 s, where logistic fits took ~0.1 s *each*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from radvigil.errors import InputError


@dataclass(frozen=True)
class DomainTest:
    """Out-of-fold AUC (window = positive class), permutation p-value and critical AUC."""

    auc: float
    p_value: float | None
    critical_value: float | None
    folds: int


def domain_classifier_test(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    folds: int,
    ridge: float,
    n_permutations: int,
    alpha: float,
    rng: np.random.Generator,
) -> DomainTest:
    """Test whether a linear classifier separates ``window`` from ``reference`` rows.

    Args:
        reference: Reference sample, shape (n, d).
        window: Window sample, shape (m, d).
        folds: Cross-validation folds (random, independent of labels).
        ridge: L2 penalty of the least-squares discriminant on standardised features.
        n_permutations: Label permutations for the null; 0 computes the AUC only.
        alpha: Level whose permutation quantile is returned as the critical value.
        rng: Source of folds and permutations.

    Returns:
        The test outcome.
    """
    n, m = len(reference), len(window)
    if n < 2 or m < 2 or reference.shape[1:] != window.shape[1:] or reference.ndim != 2:
        raise InputError(
            f"domain test needs two 2-D samples of >= 2 rows, got {reference.shape}, {window.shape}"
        )
    x = np.vstack([reference, window]).astype(np.float64)
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    labels = np.r_[np.zeros(n), np.ones(m)]
    permuted = rng.permuted(np.tile(labels, (max(n_permutations, 0), 1)), axis=1)
    targets = np.column_stack([labels, permuted.T])
    k = int(min(folds, n + m))
    fold = rng.permutation(n + m) % k
    scores = np.empty_like(targets)
    penalty = ridge * np.eye(x.shape[1])
    for f in range(k):
        train, test = fold != f, fold == f
        x_mean, y_mean = x[train].mean(axis=0), targets[train].mean(axis=0)
        xc = x[train] - x_mean
        weights = np.linalg.solve(xc.T @ xc + penalty, xc.T @ (targets[train] - y_mean))
        scores[test] = (x[test] - x_mean) @ weights + y_mean
    ranks = stats.rankdata(scores, axis=0)
    aucs = ((ranks * targets).sum(axis=0) - m * (m + 1) / 2) / (n * m)
    observed = float(aucs[0])
    if n_permutations <= 0:
        return DomainTest(observed, None, None, k)
    null = aucs[1:]
    p_value = float((1 + np.count_nonzero(null >= observed)) / (1 + n_permutations))
    critical = float(np.quantile(aucs, 1 - alpha, method="higher"))
    return DomainTest(observed, p_value, critical, k)
