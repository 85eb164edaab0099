"""Retraining triggers: YAML policies judged against facts gathered from the store.

Each trigger says whether it fires and why, so ``radvigil loop check --dry-run`` can show its
reasoning without acting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from radvigil.loop.actions import Recorder
from radvigil.loop.monitor_runs import drift_streaks
from radvigil.registry import Registry, Tag
from radvigil.store import Database, FeedbackStore, PredictionStore
from radvigil.yaml_files import load_yaml_model


class DriftTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    detector: str = "image_stats"
    consecutive: int = Field(2, ge=1, description="windows in a row with drift")


class SensitivityTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finding: str = "pneumonia"
    min: float = Field(0.90, gt=0, le=1)
    min_labels: int = Field(30, ge=1, description="labelled positives needed to judge")


class TriggerPolicy(BaseModel):
    """When to retrain (any trigger firing is enough). Absent keys disable that trigger."""

    model_config = ConfigDict(extra="forbid")

    labelled_drifters: int | None = Field(50, ge=1, description="labelled drifters needed")
    drift: DriftTrigger | None = Field(default_factory=DriftTrigger)
    sensitivity: SensitivityTrigger | None = Field(default_factory=SensitivityTrigger)
    schedule_days: float | None = Field(None, gt=0, description="retrain at least this often")


class TriggerFacts(BaseModel):
    """What the store knows now about the champion in production."""

    labelled_drifters: int
    drift_streaks: dict[str, int] = Field(default_factory=dict)
    labelled_positives: dict[str, int] = Field(default_factory=dict)
    labelled_sensitivity: dict[str, float] = Field(default_factory=dict)
    champion_created: datetime | None = None


class TriggerResult(BaseModel):
    name: str
    fired: bool
    reason: str


class TriggerCheck(BaseModel):
    """Every trigger's verdict on the serving champion, and the facts it was judged on."""

    model_name: str
    model_version: str
    facts: TriggerFacts
    results: list[TriggerResult]
    action: str = Field(
        "retrain",
        description="what firing proposes: retrain, or site_calibration for an imported "
        "champion (radvigil cannot retrain a model it did not train)",
    )

    @property
    def fired(self) -> list[str]:
        return [r.name for r in self.results if r.fired]


def load_policy(path: Path | None) -> TriggerPolicy:
    if path is None:
        return TriggerPolicy()
    return load_yaml_model(path, TriggerPolicy, "trigger policy")


def evaluate_triggers(
    policy: TriggerPolicy, facts: TriggerFacts, now: datetime | None = None
) -> list[TriggerResult]:
    results = []
    if policy.labelled_drifters is not None:
        n, need = facts.labelled_drifters, policy.labelled_drifters
        results.append(
            TriggerResult(
                name="labelled_drifters",
                fired=n >= need,
                reason=f"{n} labelled drifters (fires at {need})",
            )
        )
    if policy.drift is not None:
        streak = facts.drift_streaks.get(policy.drift.detector, 0)
        results.append(
            TriggerResult(
                name="drift",
                fired=streak >= policy.drift.consecutive,
                reason=f"{policy.drift.detector} drifted in the last {streak} window(s) in a row "
                f"(fires at {policy.drift.consecutive})",
            )
        )
    if policy.sensitivity is not None:
        s = policy.sensitivity
        positives = facts.labelled_positives.get(s.finding, 0)
        value = facts.labelled_sensitivity.get(s.finding)
        if positives < s.min_labels or value is None:
            results.append(
                TriggerResult(
                    name="sensitivity",
                    fired=False,
                    reason=(
                        f"{positives} labelled {s.finding} cases; {s.min_labels} needed to judge"
                    ),
                )
            )
        else:
            results.append(
                TriggerResult(
                    name="sensitivity",
                    fired=value < s.min,
                    reason=(
                        f"labelled sensitivity for {s.finding} {value:.3f} on {positives} cases "
                        f"(floor {s.min})"
                    ),
                )
            )
    if policy.schedule_days is not None and facts.champion_created is not None:
        age = ((now or datetime.now(UTC)) - facts.champion_created).total_seconds() / 86400
        results.append(
            TriggerResult(
                name="schedule",
                fired=age >= policy.schedule_days,
                reason=f"champion is {age:.1f} days old (retrain every {policy.schedule_days})",
            )
        )
    return results


def gather_facts(
    predictions: PredictionStore,
    feedback: FeedbackStore,
    model_version: str,
    champion_created: datetime | None,
    drift_streaks: dict[str, int] | None = None,
) -> TriggerFacts:
    """Labelled drifters and labelled sensitivity of the champion version, from the store."""
    labels = feedback.latest_labels(model_version=model_version)
    records = predictions.get_many(list(labels))
    drifters = sum(
        1 for pid, r in records.items() if r.routed_to_review and r.served_by != "shadow"
    )
    positives: dict[str, int] = {}
    caught: dict[str, int] = {}
    for pid, record in records.items():
        label = labels[pid]
        positives[label] = positives.get(label, 0) + 1
        caught[label] = caught.get(label, 0) + (label in record.findings)
    sensitivity = {k: caught[k] / n for k, n in positives.items() if n}
    return TriggerFacts(
        labelled_drifters=drifters,
        drift_streaks=drift_streaks or {},
        labelled_positives=positives,
        labelled_sensitivity=sensitivity,
        champion_created=champion_created,
    )


def check_triggers(
    db: Database,
    registry: Registry,
    model_name: str,
    policy: TriggerPolicy,
    *,
    record: Recorder | None = None,
    actor: str = "loop",
    now: datetime | None = None,
) -> TriggerCheck:
    """Judge ``policy`` on the champion's facts; a firing check is audited through ``record``.

    The champion's age comes from its registry version, so ``schedule_days`` can fire.
    """
    champion = registry.resolve(f"{model_name}@champion")
    version = champion.version
    created = champion.created
    facts = gather_facts(
        PredictionStore(db),
        FeedbackStore(db),
        version,
        created,
        drift_streaks(db, model_name, version),
    )
    check = TriggerCheck(
        model_name=model_name,
        model_version=version,
        facts=facts,
        results=evaluate_triggers(policy, facts, now),
        action="site_calibration" if champion.tags.get(Tag.IMPORTED) else "retrain",
    )
    if check.fired and record is not None:
        record("trigger", actor, version, {"fired": check.fired, "proposes": check.action})
    return check
