"""Notes: one patient note per prediction, kept as a draft until a clinician approves it."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from radvigil.errors import ForbiddenError, NotFoundError
from radvigil.store.db import Database
from radvigil.store.schemas import utcnow
from radvigil.store.tables import NoteRow, PredictionRow

NoteStatus = Literal["draft", "approved"]
NoteSource = Literal["template", "rewrite", "clinician"]


class NoteCreate(BaseModel):
    """A freshly composed draft (its text holds no names, ids or dates)."""

    text: str
    template_text: str
    source: Literal["template", "rewrite"]
    rewriter: str | None = None
    fallback_reason: str | None = None
    language: str
    grade: float
    model_version: str
    latency_ms: float


class NotePublic(BaseModel):
    """A stored note with its review state."""

    model_config = ConfigDict(from_attributes=True)

    prediction_id: str
    status: NoteStatus
    text: str
    template_text: str
    source: NoteSource
    rewriter: str | None
    fallback_reason: str | None
    language: str
    grade: float
    model_version: str
    generated_by: str
    latency_ms: float
    created_at: AwareDatetime
    updated_at: AwareDatetime
    approved_by: str | None
    approved_at: AwareDatetime | None


class NoteStore:
    """Reads and writes the ``notes`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save_draft(
        self,
        prediction_id: str,
        draft: NoteCreate,
        *,
        generated_by: str,
        replace_approved: bool = False,
    ) -> NotePublic:
        """Store a new draft for a prediction, replacing any earlier note (approval is reset).

        An approved note is replaced only with ``replace_approved`` (a clinician's call),
        decided under the row lock so a concurrent approval cannot be lost.

        Raises:
            NotFoundError: no prediction has that id.
            ForbiddenError: the note is approved and ``replace_approved`` is false.
        """
        now = utcnow()
        with self.db.session("write note", immediate=True) as session:
            if session.get(PredictionRow, prediction_id) is None:
                raise NotFoundError(f"no prediction with request id {prediction_id!r}")
            row = session.scalars(
                select(NoteRow).where(NoteRow.prediction_id == prediction_id).with_for_update()
            ).one_or_none()
            if row is not None and row.status == "approved" and not replace_approved:
                raise ForbiddenError(
                    f"the note for {prediction_id!r} is approved; only a clinician (label role) "
                    "may regenerate it"
                )
            if row is None:
                row = NoteRow(prediction_id=prediction_id, created_at=now)
                session.add(row)
            for key, value in draft.model_dump().items():
                setattr(row, key, value)
            row.status, row.generated_by, row.updated_at = "draft", generated_by, now
            row.approved_by = row.approved_at = None
            try:
                session.flush()
            except IntegrityError as exc:  # a concurrent first draft for the same prediction
                raise NotFoundError(f"could not store a note for {prediction_id!r}") from exc
            return NotePublic.model_validate(row)

    def get(self, prediction_id: str) -> NotePublic:
        """The note of a prediction, whatever its state."""
        with self.db.session("read note") as session:
            row = session.scalars(
                select(NoteRow).where(NoteRow.prediction_id == prediction_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no note for prediction {prediction_id!r}")
            return NotePublic.model_validate(row)

    def approve(self, prediction_id: str, *, approver: str, text: str | None = None) -> NotePublic:
        """Approve a note as it is, or with a clinician's edited ``text``."""
        now = utcnow()
        with self.db.session("approve note", immediate=True) as session:
            row = session.scalars(
                select(NoteRow).where(NoteRow.prediction_id == prediction_id)
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"no note for prediction {prediction_id!r}")
            if text is not None and text != row.text:
                row.text, row.source = text, "clinician"
            row.status, row.approved_by, row.approved_at, row.updated_at = (
                "approved",
                approver,
                now,
                now,
            )
            session.flush()
            return NotePublic.model_validate(row)

    def counts(self) -> dict[str, int]:
        """How many notes there are per status."""
        query = select(NoteRow.status, func.count()).group_by(NoteRow.status)
        with self.db.session("count notes") as session:
            return {status: int(n) for status, n in session.execute(query)}
