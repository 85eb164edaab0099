"""What gate checks share: cached bootstrap statistics per model and the judging of one row.

Statistics are computed once per model (and once per candidate/champion pair) however many
gates read them, with the criteria's resample count, seed and interval level.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from radvigil.evaluation.bootstrap import (
    EstimateArrays,
    Statistic,
    estimate,
    paired_difference,
)
from radvigil.evaluation.criteria import GateConfig, GateCriteria
from radvigil.evaluation.statistics import finding_statistic
from radvigil.evaluation.verdict import GateRow

Prepared = tuple[np.ndarray, np.ndarray, np.ndarray]  # encoded labels, probabilities, thresholds


class GateContext:
    """The models' outputs under judgement and their cached bootstrap estimates."""

    def __init__(
        self,
        criteria: GateCriteria,
        findings: list[str],
        finding_idx: np.ndarray,
        prepared: dict[str, Prepared],
        frame: pd.DataFrame | None,
    ) -> None:
        self.criteria = criteria
        self.findings = findings
        self.finding_idx = finding_idx
        self.prepared = prepared
        self.frame = frame
        self._cache: dict[tuple[str, ...], dict[str, EstimateArrays]] = {}

    @property
    def n_items(self) -> int:
        """Items the candidate is judged on (the hold-out's size)."""
        return int(self.prepared["candidate"][0].size)

    def has(self, name: str) -> bool:
        return name in self.prepared

    def stats(self, name: str) -> dict[str, EstimateArrays]:
        """Per-finding rates, AUC, ECE and accuracy of model outputs ``name``."""
        if (name,) not in self._cache:
            self._cache[(name,)] = self._estimate(self._statistic(name), name)
        return self._cache[(name,)]

    def difference(self, first: str, second: str) -> dict[str, EstimateArrays]:
        """``first`` minus ``second`` on the same resamples (paired bootstrap)."""
        key = (first, second)
        if key not in self._cache:
            statistic = paired_difference(self._statistic(first), self._statistic(second))
            self._cache[key] = self._estimate(statistic, first)
        return self._cache[key]

    def judge_on(self, config: GateConfig) -> str:
        return config.judge_on or self.criteria.judge_on

    def skipped(
        self,
        config: GateConfig,
        metric: str,
        reason: str,
        *,
        finding: str | None = None,
        subgroup: str | None = None,
    ) -> GateRow:
        """A row that could not be judged, with the reason."""
        return GateRow(
            gate=config.kind,
            name=config.label(),
            metric=metric,
            finding=finding,
            subgroup=subgroup,
            status="skipped",
            message=f"not checked: {reason}",
        )

    def _statistic(self, name: str) -> Statistic:
        y, p, cuts = self.prepared[name]
        return finding_statistic(y, p, self.finding_idx, cuts, self.criteria.n_bins)

    def _estimate(self, statistic: Statistic, name: str) -> dict[str, EstimateArrays]:
        return estimate(
            statistic,
            self.prepared[name][0].size,
            n_resamples=self.criteria.n_resamples,
            seed=self.criteria.seed,
            level=self.criteria.ci_level,
        )


def judge(
    config: GateConfig,
    context: GateContext,
    metric: str,
    arrays: EstimateArrays,
    column: int | None,
    bound: float,
    comparator: str,
    *,
    subgroup: str | None = None,
    difference: bool = False,
    compared: str = "candidate - champion",
) -> GateRow:
    """Compare one estimate with ``bound`` and explain the result in the row's message.

    ``>`` is the non-inferiority test and always reads the interval's lower bound; ``>=`` and
    ``<=`` read the point estimate or, with ``judge_on: ci_bound``, the conservative bound.
    ``compared`` names the two sides of a ``difference`` in the message.
    """
    index = () if column is None else (column,)
    value, low, high = (float(a[index]) for a in (arrays.value, arrays.low, arrays.high))
    if comparator == ">" or context.judge_on(config) == "ci_bound":
        judged, checked = ("ci_upper", high) if comparator == "<=" else ("ci_lower", low)
    else:
        judged, checked = "point", value
    finding = None if column is None else context.findings[column]
    quantity = f"{compared + ' ' if difference else ''}{metric}"
    quantity += f" for {finding}" if finding else ""
    quantity += f" in {subgroup}" if subgroup else ""
    level = f"{round(context.criteria.ci_level * 100):g}% CI"
    if math.isnan(checked):
        status, outcome = "fail", "cannot be judged: the value is undefined on this set"
    else:
        ok = {">=": checked >= bound, "<=": checked <= bound, ">": checked > bound}[comparator]
        status, outcome = ("pass", "passed") if ok else ("fail", "FAILED")
        if not ok and comparator == ">" and _too_few(context, value, low, bound):
            status = "skipped"
            outcome = (
                f"not judgeable on {context.n_items} cases: the interval reaches "
                f"{value - low:.3f} below the point estimate, wider than the margin "
                f"{-bound:.3f}, so even an identical model could not show non-inferiority; "
                "the point estimate is within the margin (criteria not_judgeable: mark)"
            )
    what = "point estimate" if judged == "point" else judged.replace("_", " ")
    message = (
        f"{quantity} = {_fmt(value)} ({level} {_fmt(low)} to {_fmt(high)}); "
        f"needs {what} {comparator} {bound:.3f}: {outcome}"
    )
    return GateRow(
        gate=config.kind,
        name=config.label(),
        metric=metric,
        finding=finding,
        subgroup=subgroup,
        value=_finite(value),
        ci_low=_finite(low),
        ci_high=_finite(high),
        judged=judged,
        comparator=comparator,
        threshold=bound,
        status=status,
        message=message,
    )


def _too_few(context: GateContext, value: float, low: float, bound: float) -> bool:
    """A non-inferiority row the hold-out is too small to decide: the point estimate is within
    the margin but the interval's lower half alone is wider than the margin."""
    return context.criteria.not_judgeable == "mark" and value > bound and value - low > -bound


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
