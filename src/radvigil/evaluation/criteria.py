"""Acceptance criteria: the typed content of a gates YAML file (see ``configs/gates.yaml``).

Each entry of ``gates`` names a registered gate ``kind`` and its settings; the kinds and their
checks live in :mod:`radvigil.evaluation.gates`. ``judge_on`` says what a floor or ceiling is
compared with: ``point`` (the estimate) or ``ci_bound`` (the conservative end of the bootstrap
interval: the lower bound for a minimum, the upper bound for a maximum).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from radvigil.data.shifts import PROCESSING_SUITE, get_shift
from radvigil.errors import ConfigError

JudgeOn = Literal["point", "ci_bound"]
FindingMetric = Literal["sensitivity", "specificity", "ppv", "npv", "auc"]
RateMetric = Literal["sensitivity", "specificity"]


class GateConfig(BaseModel):
    """Settings every gate accepts."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str | None = Field(default=None, description="Label shown in the verdict table.")
    judge_on: JudgeOn | None = Field(default=None, description="None: the criteria's default.")
    gating: bool = Field(
        default=True,
        description="False: an advisory gate, judged for every version and kept with its "
        "evidence, whose rows never decide the verdict (a check no shipped model passes yet).",
    )

    def label(self) -> str:
        return self.name or self.kind


class FindingFloor(GateConfig):
    """A bound per finding: ``default`` unless ``per_finding`` names the finding.

    Findings named in ``per_finding`` that the task does not have are ignored, so one file can
    serve several tasks (e.g. a stricter fracture floor).
    """

    default: float = Field(ge=0.0, le=1.0)
    per_finding: dict[str, float] = Field(default_factory=dict)

    def bound(self, finding: str) -> float:
        return self.per_finding.get(finding, self.default)


class MinSensitivity(FindingFloor):
    """Each finding's sensitivity at the model's operating threshold is at least the bound."""

    kind: Literal["min_sensitivity"] = "min_sensitivity"


class MinSpecificity(FindingFloor):
    """Each finding's specificity at the model's operating threshold is at least the bound."""

    kind: Literal["min_specificity"] = "min_specificity"


class MinAuc(FindingFloor):
    """Each finding's one-vs-rest ROC AUC is at least the bound."""

    kind: Literal["min_auc"] = "min_auc"


class MaxEce(FindingFloor):
    """Each finding's expected calibration error is at most the bound."""

    kind: Literal["max_ece"] = "max_ece"


class NonInferiority(GateConfig):
    """Candidate minus champion on the same items: the interval's lower bound > -margin."""

    kind: Literal["non_inferiority"] = "non_inferiority"
    metrics: list[FindingMetric] = Field(default=["sensitivity", "auc"])  # copied per instance
    margin: float = Field(default=0.02, ge=0.0, le=1.0)
    margins: dict[str, float] = Field(
        default_factory=dict, description="Per-metric margin overriding ``margin``."
    )


class ProblemCases(GateConfig):
    """On a curated set of hard cases: no regression beyond ``margin``, optional floor."""

    kind: Literal["problem_cases"] = "problem_cases"
    metric: Literal["accuracy", "sensitivity"] = "accuracy"
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    floors: dict[Literal["sensitivity", "specificity"], float] = Field(
        default_factory=dict,
        description="Per-finding floors on the problem cases, at the operating threshold.",
    )
    min_cases: int = Field(
        default=10, ge=1, description="Fewest positives (negatives) to judge a floor on."
    )

    @field_validator("floors")
    @classmethod
    def _unit_floors(cls, floors: dict[str, float]) -> dict[str, float]:
        if any(not 0.0 <= v <= 1.0 for v in floors.values()):
            raise ValueError(f"floors must be in [0, 1], got {floors}")
        return floors


class SubgroupFloor(GateConfig):
    """A floor on a metric for every large-enough group of a metadata column."""

    kind: Literal["subgroup_floor"] = "subgroup_floor"
    column: str
    metric: FindingMetric = "sensitivity"
    min: float = Field(ge=0.0, le=1.0)
    min_size: int = Field(default=30, ge=1, description="Smaller groups are skipped.")
    min_cases: int = Field(
        default=10, ge=1, description="Fewest positives (negatives for specificity) to judge."
    )


class Perturbation(BaseModel):
    """One processing change of the robustness suite: a registered shift at two strengths.

    ``mild`` and ``strong`` are that shift's parameters (see :mod:`radvigil.data.shifts`).
    """

    model_config = ConfigDict(extra="forbid")

    shift: str
    mild: dict[str, float]
    strong: dict[str, float]

    @property
    def name(self) -> str:
        return self.shift


def _default_suite() -> list[Perturbation]:
    """The standard suite: what PACS exports, vendors' processing and detectors do to a film."""
    return [Perturbation(shift=k, mild=m, strong=s) for k, (m, s) in PROCESSING_SUITE.items()]


def _default_drops() -> dict[RateMetric, float]:
    return {"sensitivity": 0.05, "specificity": 0.10}


class Robustness(GateConfig):
    """At the version's own thresholds, perturbed minus clean on the same hold-out items.

    Under each ``mild`` perturbation a metric may fall by at most ``max_drop`` (the lower end of
    the paired interval is above ``-max_drop``); ``strong`` perturbations are reported, not
    gated. Perturbations are seeded per image from ``seed``.
    """

    kind: Literal["robustness"] = "robustness"
    suite: list[Perturbation] = Field(default_factory=_default_suite, min_length=1)
    max_drop: dict[RateMetric, float] = Field(default_factory=_default_drops)
    seed: int = 0
    report_strong: bool = True

    @field_validator("suite")
    @classmethod
    def _known_shifts(cls, suite: list[Perturbation]) -> list[Perturbation]:
        for item in suite:
            for params in (item.mild, item.strong):
                try:
                    get_shift(item.shift, **params)
                except ConfigError as exc:
                    raise ValueError(exc.message) from exc
        if len({item.shift for item in suite}) != len(suite):
            raise ValueError("each shift may appear once in the suite")
        return suite


class GateCriteria(BaseModel):
    """A full set of acceptance criteria and how their evidence is computed."""

    model_config = ConfigDict(extra="forbid")

    judge_on: JudgeOn = "point"
    n_resamples: int = Field(default=1000, ge=100)
    seed: int = 0
    ci_level: float = Field(default=0.95, gt=0.5, lt=1.0)
    n_bins: int = Field(default=10, ge=2, le=50)
    not_judgeable: Literal["mark", "fail"] = Field(
        default="mark",
        description="A non-inferiority row whose interval is wider than its margin although "
        "the point estimate is within it: 'mark' reports it as not judgeable on n cases "
        "(skipped, shown in the verdict), 'fail' fails it.",
    )
    gates: list[SerializeAsAny[GateConfig]] = Field(min_length=1)
