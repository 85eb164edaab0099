"""Models: versions with gate verdicts and lineage, the rollout, shadow comparison, actions.

The action forms call the same function as ``POST /v1/admin/rollout/{action}``: the role check
(admin only), the gate check before a promotion, the audit record and the registry tags are
all the API's. Non-admins are shown no buttons, and a forced POST is refused with 403.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from radvigil.dashboard.lineage import alias_history, served_summary, versions
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import PREFIX, Form, SignedIn
from radvigil.errors import InputError, NotFoundError, RadvigilError
from radvigil.loop.rollout import Action
from radvigil.service.deps import State
from radvigil.service.schemas import RolloutIn

router = APIRouter(route_class=PageRoute)
ACTIONS: dict[str, str] = {
    "shadow": "Start shadow mode: the challenger scores every study silently.",
    "canary": "Start a canary: the challenger answers a share of studies.",
    "promote": "Promote the challenger to champion (the current champion becomes 'previous').",
    "reject": "Reject the challenger: it stops being served.",
    "rollback": "Roll back: the previous champion serves again.",
}


@router.get("/models")
def models_page(
    request: Request,
    state: State,
    viewer: SignedIn,
    done: str | None = Query(None, max_length=20),
) -> Response:
    viewer.require("read_predictions")
    history, history_error = alias_history(state)
    rows, versions_error = versions(state)
    champion, challenger = state.models.champion, state.models.challenger
    aliases = {alias for row in rows for alias in row["aliases"]}
    if state.models.deployments is not None:  # radvigil's own state, not MLflow's aliases
        held = state.models.deployments.state(state.settings.model_name)
        aliases = {a for a in ("champion", "challenger", "previous") if held.alias(a)}
    available = []
    if "challenger" in aliases:
        available += ["shadow", "canary", "promote", "reject"]
    if "previous" in aliases:
        available.append("rollback")
    report, report_error = None, None
    if challenger is not None or state.models.rollout.challenger:
        try:
            report = state.shadow_report()
        except RadvigilError as exc:
            report_error = exc.message
    return render(
        request,
        "models.html",
        viewer,
        served=[served_summary(m, history) for m in (champion, challenger) if m is not None],
        rollout=state.models.rollout,
        rows=rows,
        history=list(reversed(history))[:30],
        registry_error=history_error or versions_error,
        registry_conflict=state.models.registry_conflict,
        report=report,
        report_error=report_error,
        actions={a: ACTIONS[a] for a in available} if viewer.can("manage_models") else {},
        done=done if done in ACTIONS else None,
        changes=sorted((p.stem for p in _changes_dir(state).glob("change-*.html")), reverse=True)[
            :20
        ],
    )


def _changes_dir(state: State):
    return state.settings.reports_dir / "changes"


@router.get("/models/changes/{stem}.{ext}")
def change_record(
    state: State,
    viewer: SignedIn,
    stem: str = Path(..., pattern=r"^change-[a-z]+-v[0-9]+-[0-9T+-]+$"),
    ext: Literal["html", "json"] = Path(...),
) -> Response:
    """A promotion's or rollback's change-control record (also logged to the MLflow run)."""
    viewer.require("read_predictions")
    path = _changes_dir(state) / f"{stem}.{ext}"
    if not path.is_file():
        raise NotFoundError(f"no change-control record {stem}")
    media = "text/html" if ext == "html" else "application/json"
    return Response(path.read_bytes(), media_type=media)


@router.post("/models/{action}")
def rollout_action(
    state: State,
    viewer: SignedIn,
    form: Form,
    action: Action = Path(...),
) -> Response:
    viewer.require("manage_models")
    share = form.get("share") or None
    try:
        body = RolloutIn(reason=form.get("reason", "").strip(), share=share)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise InputError(f"{where}: {exc.errors()[0]['msg']}") from exc
    state.move_rollout(action, viewer.name, body.reason, share=body.share, force=body.force)
    return RedirectResponse(f"{PREFIX}/models?done={action}", status_code=303)
