"""Notes of stored predictions on SQLite: drafts, audited approval and edits, no PHI, CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radvigil.cli import app
from radvigil.config import Settings
from radvigil.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from radvigil.loop.note_desk import NoteDesk, note_facts
from radvigil.notes import NoteFacts
from radvigil.notes.prompts import chat_messages, completion_prompt
from radvigil.store import (
    AuditLog,
    Database,
    NoteStore,
    PredictionRecord,
    PredictionStore,
    upgrade_database,
)

WHEN = datetime(2026, 3, 14, 9, 26, tzinfo=UTC)


def _record(request_id: str = "req-7781-alpha", **changes: object) -> PredictionRecord:
    values: dict[str, object] = {
        "id": request_id,
        "created_at": WHEN,
        "model_name": "chest-pneumonia",
        "model_version": "4",
        "task": "chest-pneumonia",
        "probabilities": {"normal": 0.08, "pneumonia": 0.92},
        "predicted_class": "pneumonia",
        "findings": ["pneumonia"],
        "confidence": 0.92,
        "warnings": ["quality flag: low_contrast: std 0.02 below 0.05"],
        "image_stats": {"mean": 0.4, "std": 0.02},
        "latency_ms": 12.0,
        "site": "St Elsewhere General",
        "view_position": "PA",
        "study_hash": "9f" * 16,
        "routed_to_review": True,
    }
    values.update(changes)
    return PredictionRecord.model_validate(values)


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'radvigil.db'}")
    upgrade_database(database)
    yield database
    database.dispose()


class Recording:
    """A rewriter that records what it was sent and echoes the template (a stand-in model)."""

    name = "recording"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def rewrite(self, facts: NoteFacts, body: str) -> str:
        self.prompts.append(completion_prompt(facts, body) + str(chat_messages(facts, body)))
        return body


def test_facts_come_from_the_record_and_its_review_reasons():
    facts = note_facts(_record())
    assert facts.findings == ("pneumonia",) and facts.found == ("pneumonia",)
    assert facts.bands == {"pneumonia": "very_high"}
    assert facts.low_quality and not facts.unusual_image
    ood = note_facts(_record(warnings=["embedding OOD score 9.1 is above the reference"]))
    assert ood.unusual_image and not ood.low_quality
    guard = note_facts(_record(warnings=["guard inverted_polarity: the image looks inverted"]))
    assert guard.unusual_image and not guard.low_quality


def test_no_phi_reaches_a_note_or_a_prompt(db: Database):
    PredictionStore(db).add(_record())
    rewriter = Recording()
    desk = NoteDesk(PredictionStore(db), NoteStore(db), AuditLog(db), rewriter=rewriter)
    stored, _ = desk.generate("req-7781-alpha", actor="dr-a")
    for text in (stored.text, stored.template_text, *rewriter.prompts):
        for secret in ("req-7781", "7781", "Elsewhere", "9f9f", "2026", "14", "March", "PA"):
            assert secret not in text
        assert not re.search(r"\d{2,}", text)


def test_notes_are_drafts_until_approved_and_approval_is_audited(db: Database):
    PredictionStore(db).add(_record())
    audit = AuditLog(db)
    desk = NoteDesk(PredictionStore(db), NoteStore(db), audit)
    with pytest.raises(NotFoundError, match="no note"):
        desk.approved("req-7781-alpha")
    stored, draft = desk.generate("req-7781-alpha", actor="svc")
    assert stored.status == "draft" and stored.source == "template" and draft.rewriter is None
    with pytest.raises(ConflictError, match="awaiting a clinician"):
        desk.approved("req-7781-alpha")

    approved = desk.approve("req-7781-alpha", actor="dr-a")
    assert desk.approved("req-7781-alpha").text == stored.text
    assert approved.approved_by == "dr-a" and approved.source == "template"

    edited = stored.text.replace("A computer program looked", "A program checked")
    with pytest.raises(InputError, match="names, ids or dates"):
        desk.approve("req-7781-alpha", actor="dr-a", text=edited + " Seen by Dr Who on Friday.")
    after = desk.approve("req-7781-alpha", actor="dr-b", text=edited)
    assert after.source == "clinician" and desk.approved("req-7781-alpha").text == edited

    events = audit.list(object_type="note", newest_first=False)
    assert [(e.action, e.actor) for e in events] == [
        ("note_generate", "svc"),
        ("note_approve", "dr-a"),
        ("note_edit_approve", "dr-b"),
    ]
    assert events[2].details["previous_sha256"] != events[2].details["text_sha256"]
    assert audit.verify().ok

    with pytest.raises(ForbiddenError, match="label role"):  # issue 30: service keys
        desk.generate("req-7781-alpha", actor="svc")
    assert desk.approved("req-7781-alpha").text == edited
    regenerated, _ = desk.generate("req-7781-alpha", actor="dr-b", may_replace_approved=True)
    assert regenerated.status == "draft" and regenerated.approved_by is None
    last = audit.list(object_type="note", limit=1)[0]
    assert last.action == "note_regenerate" and last.details["previous_status"] == "approved"
    assert last.details["previous_sha256"] == events[2].details["text_sha256"]
    assert NoteStore(db).counts() == {"draft": 1}


def test_a_note_needs_a_stored_prediction(db: Database):
    desk = NoteDesk(PredictionStore(db), NoteStore(db), AuditLog(db))
    with pytest.raises(NotFoundError, match="no prediction"):
        desk.generate("missing", actor="svc")


def test_cli_generates_shows_and_approves(home: Settings, tmp_path: Path):
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    db = Database.from_settings(home)
    PredictionStore(db).add(_record())
    result = runner.invoke(app, ["notes", "generate", "req-7781-alpha"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "flagged signs that could mean pneumonia" in output
    assert "draft from template" in output
    edited = tmp_path / "edited.txt"
    edited.write_text("A clinician checked your chest X-ray and will call you.")
    result = runner.invoke(app, ["notes", "approve", "req-7781-alpha", "--text-file", str(edited)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["notes", "show", "req-7781-alpha"])
    output = " ".join(result.output.split())
    assert "will call you" in output and "approved by cli:" in output
    assert runner.invoke(app, ["notes", "show", "nope"]).exit_code != 0
