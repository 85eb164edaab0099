"""Admin-only rollout: shadow, canary, promote, reject, rollback, and the shadow comparison."""

from __future__ import annotations

from fastapi import APIRouter, Path
from pydantic import BaseModel

from radvigil.loop.rollout import Action, RolloutState
from radvigil.loop.shadow import ShadowReport
from radvigil.service.deps import Admin, Reader, State
from radvigil.service.schemas import RolloutIn

router = APIRouter(prefix="/v1/admin", tags=["rollout"])


class RolloutOut(BaseModel):
    action: str
    version: str | None
    state: RolloutState


@router.get("/rollout", response_model=RolloutState, summary="Current rollout state")
def get_rollout(state: State, _: Reader) -> RolloutState:
    return state.rollout().state()


@router.get(
    "/rollout/shadow-report",
    response_model=ShadowReport,
    summary="Agreement and labelled accuracy of the shadowed challenger",
)
def shadow_report(state: State, _: Reader) -> ShadowReport:
    return state.shadow_report()


@router.post(
    "/rollout/{action}",
    response_model=RolloutOut,
    summary="Move the rollout: shadow, canary, promote, reject or rollback",
)
def move_rollout(
    state: State, key: Admin, body: RolloutIn, action: Action = Path(...)
) -> RolloutOut:
    version = state.move_rollout(action, key.name, body.reason, share=body.share, force=body.force)
    return RolloutOut(action=action, version=version, state=state.rollout().state())
