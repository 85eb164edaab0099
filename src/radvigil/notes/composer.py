"""Compose a note: the template, or a rewrite of it when one is asked for and passes every guard."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel

from radvigil.errors import RadvigilError
from radvigil.notes.facts import NoteFacts
from radvigil.notes.guards import GuardLimits, check_note
from radvigil.notes.phrasebook import get_phrasebook
from radvigil.notes.readability import Readability, readability
from radvigil.notes.rewriters import Rewriter
from radvigil.notes.template import footer, render_body

Source = Literal["template", "rewrite"]


class NoteDraft(BaseModel):
    """A composed note and how it came to be (kept with the note for review and metrics)."""

    text: str
    source: Source
    rewriter: str | None = None
    fallback_reason: str | None = None
    template_text: str
    readability: Readability
    language: str
    latency_ms: float


def compose(
    facts: NoteFacts, rewriter: Rewriter | None = None, *, limits: GuardLimits | None = None
) -> NoteDraft:
    """The template note, replaced by ``rewriter``'s version only if every guard passes it.

    A rewriter error, a timeout or any guard failure keeps the template, with the reason.
    """
    started = time.perf_counter()
    book = get_phrasebook(facts.language)
    template_body = render_body(facts, book)
    body, source, reason = template_body, "template", None
    if rewriter is not None:
        try:
            candidate = rewriter.rewrite(facts, template_body)
        except RadvigilError as exc:
            reason = f"rewriter_failed: {exc.message}"
        else:
            failures = check_note(candidate, facts, book=book, limits=limits)
            if failures:
                reason = "; ".join(str(f) for f in failures)
            else:
                body, source = candidate, "rewrite"
    end = footer(facts, book)
    return NoteDraft(
        text=f"{body}\n{end}",
        source=source,
        rewriter=None if rewriter is None else rewriter.name,
        fallback_reason=reason,
        template_text=f"{template_body}\n{end}",
        readability=readability(body, book.textstat_lang),
        language=facts.language,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
    )
