"""Patient notes for stored predictions: generate, approve or edit, and read the approved text.

The one home of these actions: the API routes, the CLI and the dashboard call
:class:`NoteDesk`, which adapts stored predictions to :class:`~radvigil.notes.NoteFacts`,
keeps drafts in the note store and audits every generation, approval and edit.
"""

from __future__ import annotations

import hashlib
from typing import TypedDict

from radvigil.config import Settings
from radvigil.errors import ConfigError, ConflictError, ForbiddenError, InputError, NotFoundError
from radvigil.notes import GuardLimits, NoteDraft, NoteFacts, check_no_phi, compose
from radvigil.notes.facts import facts_from_prediction
from radvigil.notes.rewriters import HttpRewriter, LlamaCppRewriter, Rewriter, bundled_model_path
from radvigil.store import (
    AuditLog,
    NoteCreate,
    NotePublic,
    NoteStore,
    PredictionRecord,
    PredictionStore,
)
from radvigil.task import load_task

MAX_NOTE_CHARS = 4000


class _RewriterLimits(TypedDict):
    """The settings every rewriter takes."""

    timeout: float
    max_tokens: int
    seed: int


def task_findings(record: PredictionRecord) -> tuple[str, ...]:
    """The findings the record's task can flag (every class but the first when unknown)."""
    try:
        return tuple(load_task(record.task).findings)
    except ConfigError:
        return tuple(list(record.probabilities)[1:])


def note_facts(record: PredictionRecord, language: str = "en") -> NoteFacts:
    """The facts a note may state about a stored prediction (no ids, dates or site).

    Quality and OOD flags come from the reasons the prediction was routed to review: a QC
    flag makes the picture "not clear enough"; an OOD score or a per-case guard (inverted
    polarity, field of view, intensity LUT) makes it "unlike the training pictures".
    """
    return facts_from_prediction(
        findings=task_findings(record),
        found=record.findings,
        probabilities=record.probabilities,
        low_quality=any(w.startswith("quality flag") for w in record.warnings),
        unusual_image=any("OOD" in w or w.startswith("guard ") for w in record.warnings),
        model_version=record.model_version,
        language=language,
    )


def rewriter_from_settings(settings: Settings) -> Rewriter | None:
    """The configured rewriter (``RADVIGIL_NOTES_REWRITER``), or None for template notes."""
    common: _RewriterLimits = {
        "timeout": settings.notes_timeout_seconds,
        "max_tokens": settings.notes_max_tokens,
        "seed": settings.notes_seed,
    }
    if settings.notes_rewriter == "http":
        if not settings.notes_url:
            raise ConfigError("RADVIGIL_NOTES_REWRITER=http needs RADVIGIL_NOTES_URL")
        return HttpRewriter(settings.notes_url, settings.notes_model, **common)
    if settings.notes_rewriter == "gguf":
        path = settings.notes_model_path or bundled_model_path(settings.home_dir / "notes-model")
        return LlamaCppRewriter(path, **common)
    return None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class NoteDesk:
    """Generates, approves and serves patient notes for stored predictions.

    Args:
        predictions: where the predictions are read.
        notes: where the notes are kept.
        audit: the audit log (every generation, approval and edit is recorded).
        rewriter: the optional language-model rewriter.
        language: the notes' language.
        limits: the guards' bounds.
    """

    def __init__(
        self,
        predictions: PredictionStore,
        notes: NoteStore,
        audit: AuditLog,
        *,
        rewriter: Rewriter | None = None,
        language: str = "en",
        limits: GuardLimits | None = None,
    ) -> None:
        self.predictions = predictions
        self.notes = notes
        self.audit = audit
        self.rewriter = rewriter
        self.language = language
        self.limits = limits

    def draft(self, prediction_id: str) -> tuple[NoteDraft, PredictionRecord]:
        """Compose a note for a stored prediction without storing it."""
        record = self.predictions.get(prediction_id)
        facts = note_facts(record, self.language)
        return compose(facts, self.rewriter, limits=self.limits), record

    def generate(
        self, prediction_id: str, *, actor: str, may_replace_approved: bool = False
    ) -> tuple[NotePublic, NoteDraft]:
        """Compose and store a (new) draft for a prediction; audited as ``note_generate``.

        A note that already exists is audited as ``note_regenerate`` with the text and status it
        replaced; an approved one is replaced only when ``may_replace_approved`` (label role).

        Raises:
            ForbiddenError: the note is approved and ``may_replace_approved`` is false.
        """
        try:
            previous: NotePublic | None = self.notes.get(prediction_id)
        except NotFoundError:
            previous = None
        if previous is not None and previous.status == "approved" and not may_replace_approved:
            raise ForbiddenError(
                f"the note for {prediction_id!r} is approved; only a clinician (label role) "
                "may regenerate it"
            )
        draft, record = self.draft(prediction_id)
        stored = self.notes.save_draft(
            prediction_id,
            NoteCreate(
                text=draft.text,
                template_text=draft.template_text,
                source=draft.source,
                rewriter=draft.rewriter,
                fallback_reason=draft.fallback_reason,
                language=draft.language,
                grade=draft.readability.grade,
                model_version=record.model_version,
                latency_ms=draft.latency_ms,
            ),
            generated_by=actor,
            replace_approved=may_replace_approved,
        )
        replaced = (
            {}
            if previous is None
            else {"previous_status": previous.status, "previous_sha256": _sha(previous.text)}
        )
        self.audit.append(
            actor=actor,
            action="note_generate" if previous is None else "note_regenerate",
            object_type="note",
            object_id=prediction_id,
            model_version=f"{record.model_name}/{record.model_version}",
            request_id=prediction_id,
            details={
                "source": draft.source,
                "rewriter": draft.rewriter,
                "fallback_reason": draft.fallback_reason,
                "text_sha256": _sha(draft.text),
                **replaced,
            },
        )
        return stored, draft

    def approve(self, prediction_id: str, *, actor: str, text: str | None = None) -> NotePublic:
        """Approve the draft, or approve a clinician's edit of it; audited either way.

        Raises:
            InputError: the edited text is empty, too long or holds a name, id or date.
            NotFoundError: the prediction has no note yet.
        """
        current = self.notes.get(prediction_id)
        record = self.predictions.get(prediction_id)
        edit = text.strip() if text is not None else None
        if edit == current.text:
            edit = None  # the draft as it was: a plain approval
        if edit is not None:
            if not edit or len(edit) > MAX_NOTE_CHARS:
                raise InputError(f"an edited note must have 1-{MAX_NOTE_CHARS} characters")
            if problems := check_no_phi(edit):
                raise InputError(
                    "a note must not contain names, ids or dates: "
                    + "; ".join(p.message for p in problems)
                )
        stored = self.notes.approve(prediction_id, approver=actor, text=edit)
        self.audit.append(
            actor=actor,
            action="note_approve" if edit is None else "note_edit_approve",
            object_type="note",
            object_id=prediction_id,
            model_version=f"{record.model_name}/{record.model_version}",
            request_id=prediction_id,
            details={
                "previous_sha256": _sha(current.text),
                "text_sha256": _sha(stored.text),
                "source": stored.source,
            },
        )
        return stored

    def approved(self, prediction_id: str) -> NotePublic:
        """The approved note, the only text a patient-facing system may show.

        Raises:
            NotFoundError: no note yet.
            ConflictError: the note is still a draft awaiting a clinician.
        """
        note = self.notes.get(prediction_id)
        if note.status != "approved":
            raise ConflictError(
                f"the note for {prediction_id!r} is a draft awaiting a clinician's approval"
            )
        return note
