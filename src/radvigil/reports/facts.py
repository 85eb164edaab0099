"""What a result object states: each finding at its operating threshold, model and warning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from radvigil.model.card import REVIEW_WARNING


class FindingFact(BaseModel):
    """One finding: calibrated probability, the version's operating threshold, the verdict."""

    name: str
    probability: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1)
    present: bool = Field(description="The decision the prediction made (probability >= threshold)")


class ResultFacts(BaseModel):
    """Everything a result object says about one prediction (no patient data)."""

    prediction_id: str
    model_name: str
    model_version: str
    findings: list[FindingFact]
    warning: str = REVIEW_WARNING


def facts_from_prediction(
    prediction_id: str,
    model_name: str,
    model_version: str,
    probabilities: Mapping[str, float],
    finding_classes: Sequence[str],
    flagged: Sequence[str],
    thresholds: Mapping[str, float],
) -> ResultFacts:
    """Facts of a stored prediction: one :class:`FindingFact` per finding class of the task.

    ``flagged`` is the prediction's own decision, so the SR never re-decides from rounded values.
    """
    return ResultFacts(
        prediction_id=prediction_id,
        model_name=model_name,
        model_version=model_version,
        findings=[
            FindingFact(
                name=f, probability=probabilities[f], threshold=thresholds[f], present=f in flagged
            )
            for f in finding_classes
        ],
    )
