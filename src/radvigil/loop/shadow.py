"""Shadow comparison: how the challenger's silent answers compare with the champion's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from radvigil.store import FeedbackStore, PredictionStore


class Disagreement(BaseModel):
    request_id: str
    champion: str
    challenger: str
    label: str | None


class ShadowReport(BaseModel):
    """Agreement and, where clinicians labelled the case, accuracy of each on the same cases."""

    challenger_version: str
    pairs: int
    agreement: float | None
    labelled: int
    champion_accuracy: float | None
    challenger_accuracy: float | None
    disagreements: list[Disagreement]


def compare(
    predictions: PredictionStore,
    feedback: FeedbackStore,
    challenger_version: str,
    limit: int = 10_000,
) -> ShadowReport:
    shadows = predictions.list(served_by="shadow", model_version=challenger_version, limit=limit)
    primary = predictions.get_many([s.shadow_of for s in shadows if s.shadow_of])
    labels = feedback.latest_labels(prediction_ids=list(primary))  # these cases' labels only
    pairs, agree, disagreements = 0, 0, []
    right = {"champion": 0, "challenger": 0}
    labelled = 0
    for shadow in shadows:
        champion = primary.get(shadow.shadow_of or "")
        if champion is None:
            continue
        pairs += 1
        same = champion.predicted_class == shadow.predicted_class
        agree += same
        label = labels.get(champion.id)
        if label is not None:
            labelled += 1
            right["champion"] += champion.predicted_class == label
            right["challenger"] += shadow.predicted_class == label
        if not same:
            disagreements.append(
                Disagreement(
                    request_id=champion.id,
                    champion=champion.predicted_class,
                    challenger=shadow.predicted_class,
                    label=label,
                )
            )
    return ShadowReport(
        challenger_version=challenger_version,
        pairs=pairs,
        agreement=agree / pairs if pairs else None,
        labelled=labelled,
        champion_accuracy=right["champion"] / labelled if labelled else None,
        challenger_accuracy=right["challenger"] / labelled if labelled else None,
        disagreements=disagreements[:200],
    )


def shadow_report(
    predictions: PredictionStore,
    feedback: FeedbackStore,
    rollout_challenger: str | None,
    serving_challenger: str | None,
) -> ShadowReport:
    """The comparison of the challenger in rollout (else the one being served, else none yet),
    as the API and the dashboard both show it."""
    return compare(predictions, feedback, rollout_challenger or serving_challenger or "")


def shadow_evidence(
    predictions: PredictionStore, feedback: FeedbackStore
) -> Callable[[str], dict[str, Any]]:
    """The shadow comparison of a version as change-control evidence (without the cases)."""

    def evidence(version: str) -> dict[str, Any]:
        report = compare(predictions, feedback, version)
        return {"shadow": report.model_dump(exclude={"disagreements"})}

    return evidence
