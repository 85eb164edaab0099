"""Guards that decide whether a rewritten note may replace the template note.

Each guard is a plain check of the text against the facts and the phrasebook; a note passes
only when every guard passes. Hand-written on purpose: the checks are specific to these facts
(the task's findings, the probability band, the fixed sentences), which no library knows.
The finding-polarity check is a small NegEx-style rule (a negation cue in the same sentence),
not language understanding: it is a net under the template and the clinician's approval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from radvigil.notes.facts import NoteFacts
from radvigil.notes.phrasebook import Phrasebook, get_phrasebook
from radvigil.notes.readability import readability

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_DATE = re.compile(r"\b\d{1,4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,4}\b")
_HONORIFIC = re.compile(r"\b(?i:mr|mrs|ms|miss|dr|prof)\.?\s+[A-Z][a-z]+")
_EMAIL = re.compile(r"\b\S+@\S+\.\w+\b")
_ID_WORDS = re.compile(
    r"\b(?:mrn|patient id|record number|accession|date of birth|born on|d\.o\.b)\b", re.I
)


class GuardLimits(BaseModel):
    """Bounds a note must keep (readability as a Flesch-Kincaid grade)."""

    max_grade: float = Field(default=8.0, gt=0)
    min_words: int = Field(default=25, ge=1)
    max_words: int = Field(default=160, ge=1)
    max_sentence_words: int = Field(default=25, ge=1)


@dataclass(frozen=True)
class GuardFailure:
    """Why a note was rejected: a stable code and a readable message."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _phrases(words: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of ``words`` as whole words, longest first at each position."""
    ordered = sorted({w.lower() for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, ordered)) + r")(?![\w-])")


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def check_no_phi(text: str, book: Phrasebook | None = None) -> list[GuardFailure]:
    """Names, identifiers and dates a patient note must never hold (also run on edits)."""
    book = book or get_phrasebook("en")
    failures = []
    if _DATE.search(text) or _phrases(book.months).search(text.lower()):
        failures.append(GuardFailure("phi_date", "the note contains a date or a day"))
    if _HONORIFIC.search(text) or _EMAIL.search(text):
        failures.append(GuardFailure("phi_name", "the note contains a name or an address"))
    if _ID_WORDS.search(text) or re.search(r"\d{5,}", text):
        failures.append(GuardFailure("phi_id", "the note contains an identifier"))
    return failures


def check_note(
    body: str,
    facts: NoteFacts,
    *,
    book: Phrasebook | None = None,
    limits: GuardLimits | None = None,
) -> list[GuardFailure]:
    """Every reason ``body`` may not be shown for ``facts``; an empty list means it passes."""
    book = book or get_phrasebook(facts.language)
    limits = limits or GuardLimits()
    text = _normalise(body)
    failures = check_no_phi(body, book)
    failures += _required(text, facts, book)
    failures += _numbers(body, text, facts, book)
    failures += _findings(text, facts, book)
    failures += _bands(text, facts, book)
    failures += _vocabulary(text, facts, book)
    failures += _size(body, limits, book)
    return failures


def _required(text: str, facts: NoteFacts, book: Phrasebook) -> list[GuardFailure]:
    failures = []
    if _normalise(book.disclaimer) not in text:
        failures.append(GuardFailure("disclaimer_missing", "the disclaimer is not there verbatim"))
    if _normalise(book.review) not in text:
        failures.append(
            GuardFailure("review_missing", "the 'a clinician will review' sentence is missing")
        )
    if facts.flagged and not _phrases(book.flag_cues).search(text):
        failures.append(
            GuardFailure("caveat_missing", "the image was flagged but the note does not say so")
        )
    return failures


def _numbers(body: str, text: str, facts: NoteFacts, book: Phrasebook) -> list[GuardFailure]:
    allowed = facts.numbers()
    extra = sorted({n for n in _DIGITS.findall(body) if n not in allowed})
    extra += sorted({m.group(1) for m in _phrases(book.number_words).finditer(text)})
    if "%" in body and "%" not in extra:
        extra.append("%")
    if not extra:
        return []
    return [GuardFailure("number_added", f"numbers not in the facts: {', '.join(extra)}")]


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def _findings(text: str, facts: NoteFacts, book: Phrasebook) -> list[GuardFailure]:
    terms, negations = _phrases(book.finding_terms), _phrases(book.negations)
    assertions = _phrases(book.assertions)
    failures: list[GuardFailure] = []
    asserted: set[str] = set()
    for sentence in _sentences(text):
        named = {book.finding_terms[m.group(1)]: m.group(1) for m in terms.finditer(sentence)}
        negated, asserting = bool(negations.search(sentence)), bool(assertions.search(sentence))
        for finding, term in named.items():
            if finding not in facts.findings:
                failures.append(
                    GuardFailure("finding_invented", f"names {term!r}, which the model did not")
                )
            elif finding not in facts.found and asserting and not negated:
                failures.append(
                    GuardFailure("finding_invented", f"states {term!r}, which was not found")
                )
            elif finding in facts.found and negated and asserting:
                failures.append(
                    GuardFailure("finding_denied", f"denies {term!r}, which the model found")
                )
            elif finding in facts.found and asserting and not negated:
                asserted.add(finding)
    for finding in facts.found:
        if finding not in asserted:
            failures.append(
                GuardFailure("finding_dropped", f"does not say {book.name(finding)!r} was found")
            )
    return failures


def _bands(text: str, facts: NoteFacts, book: Phrasebook) -> list[GuardFailure]:
    expected = {book.band_words[facts.bands[f]] for f in facts.findings}
    used = {m.group(1) for m in _phrases(book.band_words.values()).finditer(text)}
    failures = []
    if missing := expected - used:
        failures.append(
            GuardFailure("band_missing", f"the chance is not put as {', '.join(sorted(missing))}")
        )
    if wrong := used - expected:
        failures.append(
            GuardFailure("band_wrong", f"says {', '.join(sorted(wrong))}, not the model's band")
        )
    return failures


def _vocabulary(text: str, facts: NoteFacts, book: Phrasebook) -> list[GuardFailure]:
    failures = []
    if jargon := sorted({m.group(1) for m in _phrases(book.jargon).finditer(text)}):
        failures.append(GuardFailure("jargon", f"uses jargon: {', '.join(jargon)}"))
    if claims := sorted({m.group(1) for m in _phrases(book.overclaims).finditer(text)}):
        failures.append(GuardFailure("overclaim", f"sounds like a diagnosis: {', '.join(claims)}"))
    if facts.found and (
        clear := sorted(m.group(1) for m in _phrases(book.all_clear).finditer(text))
    ):
        failures.append(
            GuardFailure("finding_denied", f"says {', '.join(clear)} although a finding was made")
        )
    return failures


def _size(body: str, limits: GuardLimits, book: Phrasebook) -> list[GuardFailure]:
    scores = readability(body, book.textstat_lang)
    failures = []
    if scores.grade > limits.max_grade:
        failures.append(
            GuardFailure("too_hard", f"reading grade {scores.grade} is above {limits.max_grade}")
        )
    if not limits.min_words <= scores.words <= limits.max_words:
        failures.append(
            GuardFailure(
                "length",
                f"{scores.words} words, outside {limits.min_words}-{limits.max_words}",
            )
        )
    longest = max((len(s.split()) for s in _sentences(body)), default=0)
    if longest > limits.max_sentence_words:
        failures.append(GuardFailure("sentence_too_long", f"a sentence has {longest} words"))
    return failures
