"""Patient-friendly notes: a grounded template note, an optional language-model rewrite, and
the guards that decide whether the rewrite may replace the template.

Pure logic: nothing here knows about HTTP, the CLI or the database. The loop layer
(``radvigil.loop.note_desk``) feeds it stored predictions and keeps the drafts.
"""

from __future__ import annotations

from radvigil.notes.composer import NoteDraft, compose
from radvigil.notes.facts import BANDS, Band, NoteFacts, band_of
from radvigil.notes.guards import GuardFailure, GuardLimits, check_no_phi, check_note
from radvigil.notes.phrasebook import PHRASEBOOKS, Phrasebook, get_phrasebook
from radvigil.notes.readability import Readability, readability
from radvigil.notes.template import render

__all__ = [
    "BANDS",
    "PHRASEBOOKS",
    "Band",
    "GuardFailure",
    "GuardLimits",
    "NoteDraft",
    "NoteFacts",
    "Phrasebook",
    "Readability",
    "band_of",
    "check_no_phi",
    "check_note",
    "compose",
    "get_phrasebook",
    "readability",
    "render",
]
