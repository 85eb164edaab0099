"""Admin-only rollout: shadow, canary, promote, reject, rollback, and the shadow comparison."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from radvigil.loop.actions import version_recorder
from radvigil.loop.rollout import Rollout, RolloutState
from radvigil.loop.shadow import ShadowReport, compare
from radvigil.service.deps import Admin, Reader, State
from radvigil.service.state import ServiceState

router = APIRouter(prefix="/v1/admin", tags=["rollout"])
Action = Literal["shadow", "canary", "promote", "reject", "rollback"]


class RolloutIn(BaseModel):
    """Why (required, audited) and, for a canary, the share of studies."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=3, max_length=500)]
    share: float | None = Field(None, gt=0, le=0.5)
    force: bool = Field(
        False, description="Shadow, canary or promote a version without a passing gate (audited)."
    )


class RolloutOut(BaseModel):
    action: str
    version: str | None
    state: RolloutState


def rollout_for(state: ServiceState) -> Rollout:
    name = state.settings.model_name

    def evidence(version: str) -> dict:
        report = compare(state.predictions, state.feedback, version)
        return {"shadow": report.model_dump(exclude={"disagreements"})}

    return Rollout(
        state.models.registry,
        name,
        version_recorder(state.audit, name),
        changes_dir=state.settings.reports_dir / "changes",
        evidence=evidence,
        deployments=state.models.deployments,
    )


@router.get("/rollout", response_model=RolloutState, summary="Current rollout state")
def get_rollout(state: State, _: Reader) -> RolloutState:
    return rollout_for(state).state()


@router.get(
    "/rollout/shadow-report",
    response_model=ShadowReport,
    summary="Agreement and labelled accuracy of the shadowed challenger",
)
def shadow_report(state: State, _: Reader) -> ShadowReport:
    rollout = rollout_for(state).state()
    version = rollout.challenger or (
        state.models.challenger.version if state.models.challenger else ""
    )
    return compare(state.predictions, state.feedback, version)


@router.post(
    "/rollout/{action}",
    response_model=RolloutOut,
    summary="Move the rollout: shadow, canary, promote, reject or rollback",
)
def move_rollout(
    state: State, key: Admin, body: RolloutIn, action: Action = Path(...)
) -> RolloutOut:
    rollout = rollout_for(state)
    actor = key.name
    version: str | None
    if action == "shadow":
        version = rollout.shadow(actor, body.reason, force=body.force).challenger
    elif action == "canary":
        version = rollout.canary(body.share or 0.1, actor, body.reason, force=body.force).challenger
    elif action == "promote":
        version = rollout.promote(actor, body.reason, force=body.force)
    elif action == "reject":
        version = rollout.reject(actor, body.reason)
    else:
        version = rollout.rollback(actor, body.reason)
    state.models.refresh()
    return RolloutOut(action=action, version=version, state=rollout.state())
