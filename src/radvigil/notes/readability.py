"""Readability of a note, measured with ``textstat`` in the note's language."""

from __future__ import annotations

import threading

import textstat
from pydantic import BaseModel

# textstat keeps the language as module state; one lock keeps concurrent callers apart.
_lock = threading.Lock()


class Readability(BaseModel):
    """Flesch-Kincaid grade (US school years), Flesch reading ease, words and sentences."""

    grade: float
    reading_ease: float
    words: int
    sentences: int


def readability(text: str, textstat_lang: str = "en-US") -> Readability:
    """Readability scores of ``text`` (grade 8 or lower is the patient-material target)."""
    with _lock:
        textstat.set_lang(textstat_lang)
        return Readability(
            grade=round(float(textstat.flesch_kincaid_grade(text)), 2),
            reading_ease=round(float(textstat.flesch_reading_ease(text)), 2),
            words=int(textstat.lexicon_count(text)),
            sentences=int(textstat.sentence_count(text)),
        )
