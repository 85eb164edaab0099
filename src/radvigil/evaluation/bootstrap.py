"""Seeded, vectorised bootstrap: resample index matrices turned into weight matrices.

A *statistic* is a function from a weight matrix (resamples x items) to named arrays whose first
axis is the resample. Drawing all resamples as one ``integers`` index matrix and counting them
into weights lets every metric in :mod:`radvigil.metrics` run once per chunk of
resamples instead of once per resample. Paired comparisons (candidate vs champion on the same
items) apply both models' statistics to the same weights. Intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]

DEFAULT_RESAMPLES = 1000
_CHUNK_CELLS = 2_000_000  # items x resamples per chunk: about 16 MB of float64 weights


@dataclass(frozen=True)
class EstimateArrays:
    """Point estimates with the bounds of their bootstrap interval (NaN when undefined)."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


def resample_weights(n_items: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Weight matrices, chunk by chunk, for ``n_resamples`` draws of ``n_items`` with replacement.

    The chunk size depends only on ``n_items``, so a seed always gives the same resamples.
    """
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n_items)
    for start in range(0, n_resamples, rows):
        size = min(rows, n_resamples - start)
        index = rng.integers(0, n_items, size=(size, n_items))
        index += (np.arange(size) * n_items)[:, None]
        counts = np.bincount(index.ravel(), minlength=size * n_items)
        yield counts.reshape(size, n_items).astype(np.float64)


def point_estimate(statistic: Statistic, n_items: int) -> dict[str, np.ndarray]:
    """The statistic on the original items (every weight 1)."""
    return {key: value[0] for key, value in statistic(np.ones((1, n_items))).items()}


def bootstrap_samples(
    statistic: Statistic, n_items: int, n_resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """The statistic on each resample, stacked along the first axis."""
    parts = [statistic(w) for w in resample_weights(n_items, n_resamples, seed)]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds over the first axis, ignoring undefined resamples."""
    tail = (1.0 - level) / 2.0 * 100.0
    flat = samples.reshape(samples.shape[0], -1)
    low = np.full(flat.shape[1], np.nan)
    high = np.full(flat.shape[1], np.nan)
    defined = ~np.isnan(flat).all(axis=0)
    if defined.any():
        low[defined], high[defined] = np.nanpercentile(
            flat[:, defined], [tail, 100.0 - tail], axis=0
        )
    return low.reshape(samples.shape[1:]), high.reshape(samples.shape[1:])


def estimate(
    statistic: Statistic, n_items: int, *, n_resamples: int, seed: int, level: float
) -> dict[str, EstimateArrays]:
    """Point estimate and percentile interval for every output of ``statistic``."""
    point = point_estimate(statistic, n_items)
    samples = bootstrap_samples(statistic, n_items, n_resamples, seed)
    out = {}
    for key, value in point.items():
        low, high = percentile_interval(samples[key], level)
        out[key] = EstimateArrays(np.asarray(value, float), low, high)
    return out


def paired_difference(candidate: Statistic, champion: Statistic) -> Statistic:
    """A statistic giving candidate minus champion for every shared key, on the same weights."""

    def difference(weights: np.ndarray) -> dict[str, np.ndarray]:
        a, b = candidate(weights), champion(weights)
        return {key: a[key] - b[key] for key in a.keys() & b.keys()}

    return difference
