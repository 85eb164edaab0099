"""The evaluation result: every number of one model on one labelled set, serialisable to JSON.

Undefined values (a sensitivity with no positives, an interval over a degenerate resample set)
are ``None``, so the JSON never holds NaN.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

DEFAULT_SUBGROUP_COLUMNS = (
    "source_dataset",
    "site",
    "view_position",
    "patient_sex",
    "age_band",
    "pneumonia_subtype",
)


class EvaluationOptions(BaseModel):
    """How an evaluation is computed; stored with the result so it can be reproduced."""

    n_resamples: int = Field(default=1000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Seed of the bootstrap resamples.")
    ci_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_bins: int = Field(default=10, ge=2, le=50, description="Equal-width calibration bins.")
    subgroup_columns: list[str] | None = Field(
        default=None,
        description="Metadata columns to break down by; None uses those of "
        "DEFAULT_SUBGROUP_COLUMNS present in the frame.",
    )
    min_subgroup_size: int = Field(default=30, ge=1, description="Smaller groups: 'too small'.")
    sensitivity_targets: dict[str, float] = Field(
        default_factory=dict, description="Screening sensitivity per finding (Task targets)."
    )
    default_sensitivity_target: float = Field(default=0.98, gt=0.0, le=1.0)
    specificity_target: float = Field(default=0.95, gt=0.0, le=1.0)
    n_worst_errors: int = Field(default=12, ge=0, description="Most confident errors to list.")

    def sensitivity_target(self, finding: str) -> float:
        return self.sensitivity_targets.get(finding, self.default_sensitivity_target)


class Estimate(BaseModel):
    """A point estimate with its bootstrap percentile interval."""

    value: float | None = None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, value: float, low: float = math.nan, high: float = math.nan) -> Estimate:
        return cls(value=finite(value), low=finite(low), high=finite(high))


class ClassMetrics(BaseModel):
    """One-vs-rest metrics of one class under one decision rule."""

    name: str
    support: int
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    f1: Estimate


class DecisionMetrics(BaseModel):
    """All single-label metrics under one decision rule (``argmax`` or ``thresholds``)."""

    rule: Literal["argmax", "thresholds"]
    accuracy: Estimate
    classes: list[ClassMetrics]
    macro: dict[str, Estimate]
    weighted: dict[str, Estimate]
    confusion: list[list[int]] = Field(description="Rows: true class; columns: predicted.")


class FindingMetrics(BaseModel):
    """A finding at its operating threshold: flagged when probability >= threshold."""

    finding: str
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    f1: Estimate
    auc: Estimate
    ece: Estimate


class Curve(BaseModel):
    """A ROC (x=FPR, y=TPR) or PR (x=recall, y=precision) curve of one class, one-vs-rest."""

    name: str
    x: list[float | None]
    y: list[float | None]
    thresholds: list[float]
    area: float | None = Field(description="AUC for ROC, average precision for PR.")


class Calibration(BaseModel):
    """Reliability diagram of one class (one-vs-rest) and its expected calibration error."""

    name: str
    edges: list[float]
    count: list[int]
    mean_predicted: list[float | None]
    observed: list[float | None]
    ece: Estimate


class SubgroupFinding(BaseModel):
    finding: str
    n_positive: int
    n_negative: int
    sensitivity: Estimate
    specificity: Estimate
    auc: Estimate


class Subgroup(BaseModel):
    """Metrics of the items sharing one value of a metadata column."""

    column: str
    group: str
    n: int
    status: Literal["ok", "too_small"]
    label_counts: dict[str, int]
    accuracy: Estimate | None = None
    findings: list[SubgroupFinding] = Field(default_factory=list)


class OperatingPoint(BaseModel):
    """A threshold chosen on validation for one purpose, and how it holds up on the test set."""

    finding: str
    mode: Literal["screening", "balanced", "high_specificity"]
    target: float | None = Field(description="Target sensitivity/specificity; None for Youden.")
    threshold: float
    validation_sensitivity: float | None
    validation_specificity: float | None
    test_sensitivity: Estimate
    test_specificity: Estimate


class ErrorCase(BaseModel):
    """A misclassified item (thresholds rule), ranked by the confidence of the wrong class."""

    index: int
    path: str | None
    true_label: str
    predicted: str
    confidence: float
    true_probability: float


class EvaluationResult(BaseModel):
    """Everything :func:`radvigil.evaluation.evaluate` computes for one model on one set."""

    classes: list[str]
    findings: list[str]
    n_items: int
    label_counts: dict[str, int]
    thresholds: dict[str, float]
    site_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per site, the thresholds its own items were flagged at (site calibration).",
    )
    options: EvaluationOptions
    context: dict[str, str] = Field(
        default_factory=dict, description="Provenance for the report: model, data, split."
    )
    finding_metrics: list[FindingMetrics]
    decisions: list[DecisionMetrics]
    auc: dict[str, Estimate]
    macro_auc: Estimate
    weighted_auc: Estimate
    roc: list[Curve]
    pr: list[Curve]
    calibration: list[Calibration]
    macro_ece: Estimate
    subgroups: list[Subgroup] = Field(default_factory=list)
    operating_points: list[OperatingPoint] = Field(default_factory=list)
    worst_errors: list[ErrorCase] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list)

    def finding(self, name: str) -> FindingMetrics:
        """The metrics of finding ``name`` at its operating threshold."""
        for item in self.finding_metrics:
            if item.finding == name:
                return item
        raise KeyError(f"no finding {name!r}; findings: {self.findings}")

    def decision(self, rule: str) -> DecisionMetrics:
        """The single-label metrics under decision ``rule`` (``argmax`` or ``thresholds``)."""
        for item in self.decisions:
            if item.rule == rule:
                return item
        raise KeyError(f"no decision rule {rule!r}; rules: {[d.rule for d in self.decisions]}")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def finite(value: float | np.floating) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite."""
    number = float(value)
    return number if math.isfinite(number) else None


def finite_list(values: np.ndarray, digits: int = 6) -> list[float | None]:
    """Rounded floats with NaN as None, for JSON."""
    return [None if not math.isfinite(v) else round(float(v), digits) for v in values]
