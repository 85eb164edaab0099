"""The patient note on a study page: generate or regenerate a draft, approve or edit it."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response
from fastapi.responses import RedirectResponse

from radvigil.dashboard.rendering import PageRoute
from radvigil.dashboard.session import PREFIX, Form, SignedIn
from radvigil.errors import NotFoundError
from radvigil.service.deps import State
from radvigil.store import NotePublic

router = APIRouter(route_class=PageRoute)
RequestId = Path(..., max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


def note_of(state: State, request_id: str) -> NotePublic | None:
    """The study's note in any state, or None before one is generated."""
    try:
        return state.notes.notes.get(request_id)
    except NotFoundError:
        return None


def _back(request_id: str) -> Response:
    return RedirectResponse(f"{PREFIX}/review/{request_id}#note", status_code=303)


@router.post("/review/{request_id}/note")
async def generate(
    state: State, viewer: SignedIn, form: Form, request_id: str = RequestId
) -> Response:
    viewer.require("predict")
    _, draft = await state.run_heavy(
        state.notes.generate,
        request_id,
        actor=viewer.name,
        may_replace_approved=viewer.can("label"),
    )
    state.metrics.count_note(draft)
    return _back(request_id)


@router.post("/review/{request_id}/note/approve")
def approve(state: State, viewer: SignedIn, form: Form, request_id: str = RequestId) -> Response:
    viewer.require("label")
    text = form.get("text", "").replace("\r\n", "\n").strip() or None
    state.notes.approve(request_id, actor=viewer.name, text=text)
    return _back(request_id)
