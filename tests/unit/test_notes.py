"""Patient notes: the template is grounded and readable; the guards reject unsafe rewrites."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radvigil.errors import ConfigError, ModelError
from radvigil.notes import (
    BANDS,
    GuardLimits,
    NoteFacts,
    band_of,
    check_no_phi,
    check_note,
    compose,
    get_phrasebook,
    readability,
)
from radvigil.notes.facts import facts_from_prediction
from radvigil.notes.prompts import chat_messages, completion_prompt
from radvigil.notes.template import render_body
from radvigil.stack.processes import free_port

TASKS = {
    "chest-pneumonia": ("pneumonia",),
    "chest-3class": ("pneumonia", "tuberculosis"),
    "chest-pneumonia-subtype": ("bacterial", "viral"),
}
BAND_KEYS = [band for _, band in BANDS]


def _facts(found=(), p=0.05, low_quality=False, unusual=False, findings=("pneumonia",)):
    return facts_from_prediction(
        findings=findings,
        found=found,
        probabilities=dict.fromkeys(findings, p),
        low_quality=low_quality,
        unusual_image=unusual,
        model_version="3",
    )


class Fixed:
    """A rewriter that returns a fixed text (stands in for a language model's output)."""

    name = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text

    def rewrite(self, facts: NoteFacts, body: str) -> str:
        return self.text


@given(
    task=st.sampled_from(sorted(TASKS)),
    data=st.data(),
    low_quality=st.booleans(),
    unusual=st.booleans(),
)
def test_every_template_note_passes_its_own_guards_and_reads_at_grade_8(
    task, data, low_quality, unusual
):
    findings = TASKS[task]
    found = data.draw(st.lists(st.sampled_from(findings), unique=True))
    bands = {f: data.draw(st.sampled_from(BAND_KEYS)) for f in findings}
    facts = NoteFacts(
        findings=findings,
        found=tuple(found),
        bands=bands,
        low_quality=low_quality,
        unusual_image=unusual,
        model_version="12",
    )
    body = render_body(facts)
    assert check_note(body, facts) == []
    assert readability(body).grade <= 8
    note = compose(facts)
    assert note.source == "template" and note.fallback_reason is None
    assert note.text.endswith("\nProgram version: 12.")


def test_template_structure_for_a_normal_and_a_flagged_case():
    normal = compose(_facts()).text
    assert "did not find signs of pneumonia" in normal
    assert "chance of pneumonia as very low" in normal
    book = get_phrasebook("en")
    assert book.review in normal and book.disclaimer in normal
    flagged = compose(_facts(found=("pneumonia",), p=0.95, low_quality=True, unusual=True)).text
    assert "flagged signs that could mean pneumonia" in flagged
    assert "very high" in flagged and "may not be clear enough" in flagged
    assert "looks different" in flagged


@pytest.mark.parametrize(
    ("p", "band"),
    [(0.0, "very_low"), (0.099, "very_low"), (0.1, "low"), (0.5, "medium"), (0.9, "very_high")],
)
def test_bands_cut_calibrated_probabilities(p, band):
    assert band_of(p) == band


def test_facts_refuse_a_finding_outside_the_task():
    with pytest.raises(ValueError, match="must be among"):
        NoteFacts(
            findings=("pneumonia",),
            found=("cancer",),
            bands={"pneumonia": "low"},
            model_version="1",
        )


def test_unknown_language_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: en"):
        get_phrasebook("xx")


GOOD = (
    "A computer program checked your chest X-ray. It did not find signs of pneumonia. "
    "It rates the chance of pneumonia as very low. A clinician will review this result and "
    "talk with you about it. This note is not a diagnosis. The program only helps your care team."
)


def test_a_faithful_rewrite_is_kept():
    note = compose(_facts(), Fixed(GOOD))
    assert note.source == "rewrite" and note.fallback_reason is None
    assert note.text.startswith("A computer program checked")
    assert note.template_text.startswith("A computer program looked")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (
            GOOD.replace("signs of pneumonia.", "signs of pneumonia, but it saw a small nodule."),
            "finding_invented",
        ),
        (
            GOOD.replace("It did not find signs of pneumonia.", "It found signs of pneumonia."),
            "finding_invented",
        ),
        (GOOD.replace(" This note is not a diagnosis.", ""), "disclaimer_missing"),
        (
            GOOD.replace("A clinician will review this result and talk with you about it. ", ""),
            "review_missing",
        ),
        (GOOD.replace("as very low.", "as very low, about 3 in 100."), "number_added"),
        (GOOD.replace("as very low.", "as very low, under five percent."), "number_added"),
        (GOOD.replace("very low", "high"), "band_wrong"),
        (GOOD.replace("X-ray.", "X-ray for bilateral opacity."), "jargon"),
        (
            GOOD.replace(
                "It did not find", "You definitely do not have pneumonia. It did not find"
            ),
            "overclaim",
        ),
        (GOOD + " Mr Smith, see you on 12/03/2026.", "phi_name"),
        ("Your lungs look fine.", "length"),
    ],
)
def test_an_unsafe_rewrite_falls_back_to_the_template_with_the_reason(text, code):
    note = compose(_facts(), Fixed(text))
    assert note.source == "template"
    assert code in note.fallback_reason
    assert note.text.startswith("A computer program looked at your chest X-ray.")


def test_a_rewrite_that_denies_or_drops_a_found_finding_is_rejected():
    facts = _facts(found=("pneumonia",), p=0.8)
    body = render_body(facts)
    denied = body.replace(
        "It flagged signs that could mean pneumonia.", "It did not find signs of pneumonia."
    )
    assert {f.code for f in check_note(denied, facts)} >= {"finding_denied", "finding_dropped"}
    normal = body.replace("It flagged signs that could mean pneumonia.", "Your X-ray is normal.")
    assert "finding_denied" in {f.code for f in check_note(normal, facts)}


def test_a_rewrite_that_drops_the_quality_caveat_is_rejected():
    facts = _facts(low_quality=True)
    body = render_body(facts).replace(get_phrasebook("en").low_quality, "")
    assert "caveat_missing" in {f.code for f in check_note(body, facts)}


def test_readability_bound_rejects_hard_text():
    facts = _facts()
    hard = render_body(facts).replace(
        "A computer program looked at your chest X-ray.",
        "A computational interpretation system systematically evaluated your thoracic imaging "
        "examination utilising sophisticated automated methodologies.",
    )
    codes = {f.code for f in check_note(hard, facts, limits=GuardLimits(max_grade=6))}
    assert "too_hard" in codes


@pytest.mark.parametrize(
    "text",
    [
        "Seen on 2026-11-28.",
        "Dear Mrs Jones.",
        "MRN 4471.",
        "Reach me at a.b@example.org.",
        "Booked for Monday.",
        "Record 1234567.",
    ],
)
def test_phi_check_catches_names_ids_and_dates(text):
    assert check_no_phi(text)


def test_prompts_carry_only_the_facts():
    facts = _facts(found=("pneumonia",), p=0.8, low_quality=True)
    body = render_body(facts)
    prompt = completion_prompt(facts, body) + str(chat_messages(facts, body))
    assert '"found": ["pneumonia"]' in prompt and '"picture_quality_poor": true' in prompt
    assert "Program version" not in prompt


def test_an_unreachable_endpoint_falls_back_to_the_template():
    from radvigil.notes.rewriters import HttpRewriter

    rewriter = HttpRewriter(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=2.0)
    with pytest.raises(ModelError, match="notes endpoint failed"):
        rewriter.rewrite(_facts(), "x")
    note = compose(_facts(), rewriter)
    assert note.source == "template" and note.fallback_reason.startswith("rewriter_failed")
