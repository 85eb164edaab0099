"""Patient notes from the command line: generate, show and approve (or edit) a note."""

from __future__ import annotations

from pathlib import Path

import typer

from radvigil.cli.admin import actor, database
from radvigil.cli.common import console
from radvigil.config import get_settings
from radvigil.loop.note_desk import NoteDesk, rewriter_from_settings
from radvigil.store import AuditLog, NoteStore, PredictionStore

app = typer.Typer(no_args_is_help=True, help="Patient notes: generate, show, approve.")


def _desk() -> NoteDesk:
    settings = get_settings()
    db = database()
    return NoteDesk(
        PredictionStore(db),
        NoteStore(db),
        AuditLog(db),
        rewriter=rewriter_from_settings(settings),
        language=settings.notes_language,
    )


@app.command("generate")
def notes_generate(
    prediction_id: str = typer.Argument(...),
    replace_approved: bool = typer.Option(
        False,
        "--replace-approved",
        help="Replace a clinician-approved note with a new draft (audited as note_regenerate).",
    ),
) -> None:
    """Compose (or recompose) the draft note of a prediction with the configured rewriter."""
    stored, draft = _desk().generate(
        prediction_id, actor=actor(), may_replace_approved=replace_approved
    )
    console.print(stored.text, highlight=False)
    why = f" (rewrite not kept: {draft.fallback_reason})" if draft.fallback_reason else ""
    console.print(
        f"draft from {stored.source}{why}; grade {stored.grade}; {stored.latency_ms:.0f} ms",
        highlight=False,
    )


@app.command("show")
def notes_show(prediction_id: str = typer.Argument(...)) -> None:
    """Show a prediction's note, its state and how it was made."""
    note = _desk().notes.get(prediction_id)
    console.print(note.text, highlight=False)
    state = note.status if note.status == "draft" else f"approved by {note.approved_by}"
    console.print(
        f"{state}; source {note.source}; grade {note.grade}"
        + (f"; rewrite not kept: {note.fallback_reason}" if note.fallback_reason else ""),
        highlight=False,
    )


@app.command("approve")
def notes_approve(
    prediction_id: str = typer.Argument(...),
    text_file: Path | None = typer.Option(
        None, "--text-file", exists=True, dir_okay=False, help="Approve this edited text instead."
    ),
) -> None:
    """Approve a draft note (as cli:<user>), optionally replacing it with an edited text."""
    text = text_file.read_text(encoding="utf-8") if text_file else None
    note = _desk().approve(prediction_id, actor=actor(), text=text)
    console.print(f"approved the note of {prediction_id} ({note.source})", highlight=False)
