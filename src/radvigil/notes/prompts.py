"""Prompts for the rewrite: only the structured facts and the template note built from them.

No image, no identifiers, no dates and no free text reach a language model: ``NoteFacts``
holds none, and the template body is rendered from those facts alone.
"""

from __future__ import annotations

import json

from radvigil.notes.facts import NoteFacts
from radvigil.notes.phrasebook import Phrasebook, get_phrasebook

# One worked example for base (non-instruction) models, which continue a pattern.
_EXAMPLE_NOTE = (
    "A computer program looked at your chest X-ray. It did not find signs of pneumonia. "
    "It rates the chance of pneumonia as low. A clinician will review this result and talk "
    "with you about it. This note is not a diagnosis. The program only helps your care team."
)
_EXAMPLE_FACTS = (
    '{"chance": {"pneumonia": "low"}, "found": [], "not_found": ["pneumonia"], '
    '"picture_quality_poor": false, "picture_unusual": false}'
)
_EXAMPLE_REWRITE = (
    "A computer program checked your chest X-ray. It did not find signs of pneumonia. "
    "It rates the chance of pneumonia as low. A clinician will review this result and talk "
    "with you about it. This note is not a diagnosis. The program only helps your care team."
)


def facts_json(facts: NoteFacts, book: Phrasebook) -> str:
    """The facts as the model sees them: finding names and band words, no version or ids."""
    return json.dumps(
        {
            "found": [book.name(f) for f in facts.found],
            "not_found": [book.name(f) for f in facts.findings if f not in facts.found],
            "chance": {book.name(f): book.band_words[facts.bands[f]] for f in facts.findings},
            "picture_quality_poor": facts.low_quality,
            "picture_unusual": facts.unusual_image,
        },
        sort_keys=True,
    )


def instructions(book: Phrasebook) -> str:
    return (
        "You rewrite short notes about a chest X-ray for patients. Use short, plain, kind "
        "sentences. Keep every fact and the chance words exactly. Do not add findings, "
        "numbers, names, dates or advice. Keep these two sentences word for word: "
        f'"{book.review}" "{book.disclaimer}"'
    )


def chat_messages(facts: NoteFacts, body: str) -> list[dict[str, str]]:
    """OpenAI chat messages for instruction-tuned models behind an HTTP endpoint."""
    book = get_phrasebook(facts.language)
    return [
        {"role": "system", "content": instructions(book)},
        {
            "role": "user",
            "content": f"Facts: {facts_json(facts, book)}\n\nNote:\n{body}\n\n"
            "Reply with the rewritten note only.",
        },
    ]


def completion_prompt(facts: NoteFacts, body: str) -> str:
    """A plain completion prompt with one example, for a small base model run in-process."""
    book = get_phrasebook(facts.language)
    return (
        f"{instructions(book)}\n\n"
        f"Facts: {_EXAMPLE_FACTS}\nNote: {_EXAMPLE_NOTE}\nRewrite: {_EXAMPLE_REWRITE}\n\n"
        f"Facts: {facts_json(facts, book)}\nNote: {body}\nRewrite:"
    )


def clean(output: str) -> str:
    """The first paragraph of a model's output, whitespace collapsed."""
    first = output.strip().split("\n\n")[0]
    return " ".join(first.split())
