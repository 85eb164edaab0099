"""Column-by-column drift of image statistics (KS) and metadata (chi-squared), with PSI.

Each column gets a two-sample test against the reference: Kolmogorov-Smirnov for the continuous
image statistics, a chi-squared test of homogeneity on the 2 x K table of category counts for
metadata (categories new in the window count too). The p-values of all columns are adjusted
together, Benjamini-Hochberg by default (controls the share of false column flags; use
``bonferroni`` to control the chance of any false flag). The statistic is ``-log10`` of the
smallest adjusted p-value, so the default threshold ``-log10(alpha)`` means "some column drifted
at level alpha". Rank tests saturate (two fully separated samples give the same p-value however
far apart they are), so the effect size does the ranking: for image statistics the largest
Wasserstein-1 distance between window and reference in reference standard deviations ("the
window's sharpness moved by 3.2 reference SDs"), which keeps growing with the shift; for metadata
the largest population stability index. Metadata values a client did not send (``<NA>``) are
left out on both sides: absence is not drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats

from radvigil.monitoring.detectors.base import (
    Detector,
    DetectorParams,
    Measurement,
    Skipped,
    register,
)
from radvigil.monitoring.features import MISSING
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult
from radvigil.monitoring.stattests import (
    Correction,
    adjust_pvalues,
    neg_log10,
    psi_continuous,
    psi_from_counts,
)
from radvigil.monitoring.windows import WindowData


class UnivariateParams(DetectorParams):
    source: Literal["stats", "metadata"] = Field(description="Which table to test.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Level after multiple-testing control.")
    correction: Correction = Field("bh", description="bh (false discovery) or bonferroni.")
    columns: list[str] | None = Field(None, description="Columns to test; None = all shared.")
    psi_bins: int = Field(10, ge=2, description="Reference-quantile bins for PSI.")


@register("image_stats", source="stats")
@register("metadata", source="metadata")
class UnivariateDetector(Detector):
    """Per-column KS (image stats) or chi-squared (metadata) tests, multiplicity-adjusted, + PSI."""

    Params = UnivariateParams
    params: UnivariateParams

    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        source = self.params.source
        ref, cur = getattr(profile.reference, source), getattr(window, source)
        if ref is None or cur is None:
            return Skipped(f"no {source} table in the {'reference' if ref is None else 'window'}")
        columns = [c for c in (self.params.columns or ref.columns) if c in cur and c in ref]
        absent = [c for c in columns if source == "metadata" and (cur[c] == MISSING).all()]
        columns = [c for c in columns if c not in absent]
        if not columns:
            why = f" (not sent: {absent})" if absent else ""
            return Skipped(f"no {source} columns shared by reference and window{why}")
        if source == "stats":
            # calibration (null=False) needs only the p-values: the effect sizes are details
            rows = _ks_columns(ref[columns], cur[columns], self.params.psi_bins, effects=null)
        else:
            rows = [_chi2_column(ref[c], cur[c], self.params.psi_bins) for c in columns]
        p_values = np.array([r[1] for r in rows])
        adjusted = adjust_pvalues(p_values, self.params.correction)
        per_column = {
            c: {
                "statistic": s,
                "p_value": p,
                "p_adjusted": a,
                "psi": psi,
                "effect": e,
                "drift": a < self.params.alpha,
            }
            for c, (s, p, psi, e), a in zip(columns, rows, adjusted, strict=True)
        }
        min_adjusted = float(adjusted.min())
        return Measurement(
            statistic=neg_log10(min_adjusted),
            default_threshold=neg_log10(self.params.alpha),
            n_reference=len(ref),
            p_value=min_adjusted,
            effect_size=float(max(r[3] for r in rows)),
            details={
                "test": "ks" if source == "stats" else "chi2",
                "effect": "wasserstein_sd" if source == "stats" else "psi",
                "max_psi": float(max(r[2] for r in rows)),
                "correction": self.params.correction,
                "drifted_columns": [c for c, v in per_column.items() if v["drift"]],
                "absent_columns": absent,
                "columns": per_column,
            },
        )


def _ks_columns(
    ref: pd.DataFrame, cur: pd.DataFrame, bins: int, *, effects: bool
) -> list[tuple[float, float, float, float]]:
    """(KS statistic, p-value, PSI, Wasserstein shift in reference SDs) per column.

    With every value finite, one vectorised ``ks_2samp`` call tests all columns (the same
    numbers, a third of the time: calibration runs this thousands of times); without
    ``effects`` PSI and the shift are left at 0.
    """
    r_all, c_all = ref.to_numpy(np.float64), cur.to_numpy(np.float64)
    finite = np.isfinite(r_all).all() and np.isfinite(c_all).all()
    vectorised = stats.ks_2samp(r_all, c_all, axis=0) if finite and len(c_all) else None
    rows = []
    for j in range(r_all.shape[1]):
        r, c = r_all[:, j], c_all[:, j]
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        if r.size == 0 or c.size == 0:
            rows.append((0.0, 1.0, 0.0, 0.0))
            continue
        if vectorised is not None:
            ks, p = vectorised.statistic[j], vectorised.pvalue[j]
        else:
            result = stats.ks_2samp(r, c)
            ks, p = result.statistic, result.pvalue
        psi = shift = 0.0
        if effects:
            # A constant reference column (e.g. width) is scaled by 0.1% of its level instead.
            scale = max(float(r.std()), 1e-3 * float(np.abs(r).mean()), 1e-9)
            shift = float(stats.wasserstein_distance(r, c)) / scale
            psi = psi_continuous(r, c, bins)
        rows.append((float(ks), float(p), psi, shift))
    return rows


def _chi2_column(ref: pd.Series, cur: pd.Series, bins: int) -> tuple[float, float, float, float]:
    ref, cur = ref[ref != MISSING], cur[cur != MISSING]  # a value not sent is not drift
    categories = sorted(set(ref) | set(cur))
    ref_counts = ref.value_counts().reindex(categories, fill_value=0).to_numpy()
    cur_counts = cur.value_counts().reindex(categories, fill_value=0).to_numpy()
    if len(categories) < 2 or ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return 0.0, 1.0, 0.0, 0.0
    result = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
    psi = psi_from_counts(ref_counts, cur_counts)
    return float(result.statistic), float(result.pvalue), psi, psi
