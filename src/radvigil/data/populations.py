"""Population scenarios over manifest rows: prevalence change and site/view subsets.

Where pixel shifts change how images look, these change *which* images arrive: the label shift
and covariate shift a deployed model meets when the case mix or the referring site changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from radvigil.errors import ConfigError, DataError


def subset(frame: pd.DataFrame, where: dict[str, str]) -> pd.DataFrame:
    """Rows whose ``column`` is one of ``value[,value...]`` for every item of ``where``."""
    for column, value in where.items():
        if column not in frame.columns:
            raise DataError(f"cannot select on {column!r}; columns: {sorted(frame.columns)}")
        allowed = [v.strip() for v in value.split(",")]
        kept = frame[frame[column].astype(str).isin(allowed)]
        if kept.empty:
            present = sorted(frame[column].astype(str).unique())[:20]
            raise DataError(f"no rows with {column} in {allowed}; values present: {present}")
        frame = kept
    return frame.reset_index(drop=True)


def target_shares(counts: pd.Series, factors: dict[str, float]) -> pd.Series:
    """Class shares after multiplying each named class's share by its factor and renormalising.

    For two classes this multiplies the odds: 62.5% pneumonia with ``pneumonia=2`` becomes
    1.25 / (1.25 + 0.375) = 76.9%.
    """
    unknown = sorted(set(factors) - set(counts.index.astype(str)))
    if unknown:
        raise DataError(f"no class(es) {unknown}; classes: {sorted(counts.index.astype(str))}")
    if any(k < 0 for k in factors.values()):
        raise ConfigError(f"prevalence factors must be >= 0, got {factors}")
    weights = counts / counts.sum() * pd.Series(factors).reindex(counts.index).fillna(1.0)
    if weights.sum() == 0:
        raise ConfigError(f"prevalence factors {factors} leave no class to sample")
    return weights / weights.sum()


def resample_prevalence(
    frame: pd.DataFrame,
    factors: dict[str, float],
    seed: int,
    *,
    column: str = "label",
    within: str | None = "split",
) -> pd.DataFrame:
    """Seeded subsample (no repeats) whose class shares follow :func:`target_shares`.

    Each ``within`` group (each split by default) is resampled on its own, to the largest size
    the rarest requested class allows, so no image appears twice.
    """
    if column not in frame.columns:
        raise DataError(f"cannot resample on {column!r}; columns: {sorted(frame.columns)}")
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    groups = [frame] if within is None else [g for _, g in frame.groupby(within, sort=True)]
    chosen: list[np.ndarray] = []
    for group in groups:
        labels = group[column].astype(str)
        counts = labels.value_counts().sort_index()
        shares = target_shares(counts, factors)
        total = min(counts[c] / s for c, s in shares.items() if s > 0)
        for cls, share in shares.items():
            n = min(int(counts[cls]), round(total * share))
            candidates = group.index[labels == cls].to_numpy()
            chosen.append(rng.choice(candidates, size=n, replace=False))
    picked = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)
    return frame.loc[picked].reset_index(drop=True)
