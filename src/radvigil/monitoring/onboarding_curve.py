"""What a site's labels show so far: performance measured on every label, and the learning
curve (the audit-sample estimate as labels were given, or the benchmark's curve before any).

Two numbers, never mixed: the audit sample is uniform, so its estimate is unbiased but wide;
every label together is narrower but biased, because a policy picks hard cases on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from radvigil.errors import DataError
from radvigil.monitoring.label_selection import LabelledCase, Rate, audit_performance
from radvigil.monitoring.stattests import wilson_interval


@dataclass(frozen=True)
class CurvePoint:
    """Specificity (and sensitivity when known) after ``labels`` labels."""

    labels: int
    specificity: Rate
    sensitivity: Rate | None = None


def _rate(successes: int, n: int) -> Rate:
    if n == 0:
        return Rate(None, None, None, 0)
    low, high = wilson_interval(successes, n)
    return Rate(successes / n, low, high, n)


def measured_performance(cases: Sequence[LabelledCase]) -> tuple[Rate, Rate]:
    """Sensitivity and specificity at the operating threshold on every labelled case, the
    policy's choices included (biased toward hard cases), with 95 % Wilson intervals."""
    tp = sum(c.positive and c.flagged for c in cases)
    positives = sum(c.positive for c in cases)
    tn = sum(not c.positive and not c.flagged for c in cases)
    return _rate(tp, positives), _rate(tn, len(cases) - positives)


def site_curve(cases: Sequence[LabelledCase], points: int = 8) -> list[CurvePoint]:
    """The audit-sample estimate after each of up to ``points`` evenly spaced label counts,
    ``cases`` in the order they were labelled (empty without labels)."""
    n = len(cases)
    counts = sorted({max(1, round(n * (i + 1) / points)) for i in range(points)}) if n else []
    curve = []
    for k in counts:
        sensitivity, specificity = audit_performance(cases[:k])
        curve.append(CurvePoint(k, specificity, sensitivity))
    return curve


class _Estimate(BaseModel):
    value: float | None
    low: float | None = None
    high: float | None = None


class _Cell(BaseModel):
    repair: str = "threshold"
    budget: int
    policy: str
    means: dict[str, _Estimate]


class _Bench(BaseModel):
    cells: list[_Cell]


def bench_curve(path: Path, policy: str) -> list[CurvePoint]:
    """The held-out specificity per label budget for ``policy`` from the JSON
    ``bench/site_onboarding.py`` writes (the site-head repair where the file holds several;
    mean over seeds, the CI bounds averaged likewise); empty when the policy is not in it.

    Raises:
        DataError: the file cannot be read or is not that benchmark's JSON.
    """
    try:
        bench = _Bench.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise DataError(f"cannot read the onboarding benchmark {path}: {exc}") from exc
    cells = [c for c in bench.cells if c.policy == policy and "specificity" in c.means]
    repairs = {c.repair for c in cells}
    if "head" in repairs:
        cells = [c for c in cells if c.repair == "head"]
    curve = []
    for cell in sorted(cells, key=lambda c: c.budget):
        spec = cell.means["specificity"]
        curve.append(CurvePoint(cell.budget, Rate(spec.value, spec.low, spec.high, 0)))
    return curve
