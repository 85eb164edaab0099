"""Small statistical tools shared by the detectors: plain functions over arrays.

Multiple-testing control, population stability index, Wilson intervals, a one-sided
two-proportion test, and the AUC (an adapter over radvigil.metrics) with a bootstrap interval.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats

from radvigil import metrics

Correction = Literal["bh", "bonferroni"]
_EPS = 1e-4
_MAX_LOG_P = 300.0


def adjust_pvalues(p_values: np.ndarray, method: Correction) -> np.ndarray:
    """Adjusted p-values: Bonferroni (family-wise error) or Benjamini-Hochberg (false discovery)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    if method == "bonferroni":
        return np.minimum(p * p.size, 1.0)
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(ranked, 1.0)
    return out


def neg_log10(p: float) -> float:
    """-log10(p), capped so that p = 0 stays finite and JSON-safe."""
    return float(min(-np.log10(max(p, 10.0**-_MAX_LOG_P)), _MAX_LOG_P))


def psi_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two histograms over the same bins."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = np.clip(ref / max(ref.sum(), 1.0), _EPS, None)
    cur = np.clip(cur / max(cur.sum(), 1.0), _EPS, None)
    return float(((cur - ref) * np.log(cur / ref)).sum())


def psi_continuous(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI over bins at the reference deciles (ties merged), open-ended at both sides."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1
    )
    cur_counts = np.bincount(
        np.searchsorted(edges, current, side="right"), minlength=edges.size + 1
    )
    return psi_from_counts(ref_counts, cur_counts)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    phat = successes / n
    denom = 1 + z**2 / n
    centre = (phat + z**2 / (2 * n)) / denom
    half = z * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / denom
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def proportion_increase_test(
    x_ref: int, n_ref: int, x_cur: int, n_cur: int, alpha: float
) -> tuple[float, float, float]:
    """One-sided pooled z-test that the current rate exceeds the reference rate.

    Returns:
        The rate difference (current - reference), its p-value, and the critical difference at
        ``alpha`` (the difference that would have just reached significance).
    """
    pooled = (x_ref + x_cur) / (n_ref + n_cur)
    se = np.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_ref + 1 / n_cur))
    diff = x_cur / n_cur - x_ref / n_ref
    p_value = float(stats.norm.sf(diff / se))
    return float(diff), p_value, float(stats.norm.isf(alpha) * se)


def auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of one sample; NaN when one class is absent.

    A thin adapter over :func:`radvigil.metrics.auc`, the one definition (ties count 1/2).
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    return float(metrics.auc(positive, scores, np.ones((1, positive.size)))[0])


def bootstrap_auc_interval(
    positive: np.ndarray,
    scores: np.ndarray,
    n_boot: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC (resamples lacking a class are skipped).

    Each resample is a row of multiplicity weights, so :func:`radvigil.metrics.auc` scores all
    of them from one sort.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    n = scores.size
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.stack([np.bincount(draw, minlength=n) for draw in draws]).astype(float)
    values = metrics.auc(positive, scores, weights)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))
