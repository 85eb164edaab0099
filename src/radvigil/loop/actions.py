"""One home for the loop's shared actions: labelling a case and auditing a model version.

The review routes, the CLI, the dashboard and the demo scenario all call these, so a label or
a rollout step leaves the same audit record whoever made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from radvigil.errors import InputError, NotFoundError
from radvigil.notes import check_no_phi
from radvigil.store import (
    AuditLog,
    FeedbackCreate,
    FeedbackPublic,
    FeedbackStore,
    PredictionRecord,
    PredictionStore,
)
from radvigil.store.audit_coverage import feedback_digest

Recorder = Callable[[str, str, str, dict[str, Any]], None]  # (action, actor, version, details)


def version_recorder(audit: AuditLog, name: str) -> Recorder:
    """A recorder that appends model-version events (retrain, rollout steps) to ``audit``."""

    def record(action: str, actor: str, version: str, details: dict[str, Any]) -> None:
        audit.append(
            actor=actor,
            action=action,
            object_type="model_version",
            object_id=f"{name}/{version}",
            model_version=f"{name}/{version}",
            details=details,
        )

    return record


def label_case(
    predictions: PredictionStore,
    feedback: FeedbackStore,
    audit: AuditLog,
    prediction_id: str,
    label: str,
    reviewer: str,
    comment: str | None = None,
    *,
    catch_up: Callable[[], None] | None = None,
    policy_of: Callable[[PredictionRecord], str | None] | None = None,
) -> FeedbackPublic:
    """Store a reviewer's label for a prediction and audit it.

    Args:
        catch_up: called once when the prediction is not found yet (e.g. to flush the
            service's write queue), before looking again.
        policy_of: the label-selection policy that offered the case, recorded with the label
            (:func:`radvigil.loop.onboarding.label_policy`).

    Raises:
        NotFoundError: no such prediction.
        InputError: the label is not a class of the prediction's task.
    """
    try:
        record = predictions.get(prediction_id)
    except NotFoundError:
        if catch_up is None:
            raise
        catch_up()
        record = predictions.get(prediction_id)
    classes = list(record.probabilities)
    if label not in classes:
        raise InputError(f"label {label!r} is not a class of task {record.task!r}: {classes}")
    if comment and (problems := check_no_phi(comment)):
        raise InputError(
            "the comment must not contain names, ids or dates: "
            + "; ".join(p.message for p in problems)
        )
    stored = feedback.add(
        FeedbackCreate(
            prediction_id=prediction_id,
            label=label,
            comment=comment,
            policy=policy_of(record) if policy_of is not None else None,
        ),
        reviewer=reviewer,
    )
    audit.append(
        actor=reviewer,
        action="label",
        object_type="prediction",
        object_id=record.id,
        model_version=f"{record.model_name}/{record.model_version}",
        request_id=record.id,
        details={
            "label": label,
            "predicted_class": record.predicted_class,
            "feedback_id": stored.id,
            "prediction_id": stored.prediction_id,
            "fields_sha256": feedback_digest(stored),
            "policy": stored.policy,
        },
    )
    return stored
