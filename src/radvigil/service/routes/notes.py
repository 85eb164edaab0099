"""Patient notes of stored predictions: generate, review (draft), approve or edit, and read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from radvigil.service.deps import Labeller, Predictor, Reader, State
from radvigil.store import NotePublic, allowed

router = APIRouter(prefix="/v1/predictions", tags=["notes"])
PredictionId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class NoteApproval(BaseModel):
    """A clinician's approval; ``text`` replaces the draft (an edit) when given."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)] | None = None


class ApprovedNoteOut(BaseModel):
    """What a patient-facing system may show: the approved text and who approved it."""

    prediction_id: str
    text: str
    language: str
    approved_by: str
    approved_at: str
    source: str = Field(description="template, rewrite, or clinician (edited).")


@router.post(
    "/{request_id}/note",
    response_model=NotePublic,
    summary="Generate (or regenerate) the patient note of a prediction as a draft",
    description="An approved note is replaced only by a key with the label (clinician) role; "
    "otherwise 403. Every regeneration is audited with the text it replaced.",
)
async def generate_note(state: State, key: Predictor, request_id: PredictionId) -> NotePublic:
    stored, draft = await state.run_heavy(
        state.notes.generate,
        request_id,
        actor=key.name,
        may_replace_approved=allowed(key.role, "label"),
    )
    state.metrics.count_note(draft)
    return stored


@router.get(
    "/{request_id}/note",
    response_model=ApprovedNoteOut,
    summary="The approved patient note (409 while it is a draft)",
)
def get_note(state: State, _: Reader, request_id: PredictionId) -> ApprovedNoteOut:
    note = state.notes.approved(request_id)
    return ApprovedNoteOut(
        prediction_id=note.prediction_id,
        text=note.text,
        language=note.language,
        approved_by=note.approved_by or "",
        approved_at=note.approved_at.isoformat() if note.approved_at else "",
        source=note.source,
    )


@router.get(
    "/{request_id}/note/draft",
    response_model=NotePublic,
    summary="The note in any state, with its template and why a rewrite was not kept",
)
def get_note_draft(state: State, _: Labeller, request_id: PredictionId) -> NotePublic:
    return state.notes.notes.get(request_id)


@router.post(
    "/{request_id}/note/approve",
    response_model=NotePublic,
    summary="Approve the note as it is, or with edited text (clinician)",
)
def approve_note(
    state: State, key: Labeller, request_id: PredictionId, body: NoteApproval
) -> NotePublic:
    return state.notes.approve(request_id, actor=key.name, text=body.text)
