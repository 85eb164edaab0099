"""The grounded template note: fixed structure, every sentence derived from the facts."""

from __future__ import annotations

from radvigil.notes.facts import NoteFacts
from radvigil.notes.phrasebook import Phrasebook, get_phrasebook


def render_body(facts: NoteFacts, book: Phrasebook | None = None) -> str:
    """The note's body: what was looked at, what was found, how sure, next step, disclaimer.

    Only the body may be rewritten by a language model; the footer (:func:`footer`) never is.
    """
    book = book or get_phrasebook(facts.language)
    sentences = [book.intro]
    sentences += [book.found.format(finding=book.name(f)) for f in facts.found]
    missing = [book.name(f) for f in facts.findings if f not in facts.found]
    if missing:
        sentences.append(book.not_found.format(findings=book.join_or.join(missing)))
    sentences += [
        book.band.format(finding=book.name(f), band=book.band_words[facts.bands[f]])
        for f in facts.findings
    ]
    if facts.low_quality:
        sentences.append(book.low_quality)
    if facts.unusual_image:
        sentences.append(book.unusual_image)
    sentences += [book.review, book.disclaimer]
    return " ".join(sentences)


def footer(facts: NoteFacts, book: Phrasebook | None = None) -> str:
    """The fixed last line: which program version wrote the result."""
    book = book or get_phrasebook(facts.language)
    return book.footer.format(version=facts.model_version)


def render(facts: NoteFacts, book: Phrasebook | None = None) -> str:
    """The whole template note: body, then footer on its own line."""
    return f"{render_body(facts, book)}\n{footer(facts, book)}"
