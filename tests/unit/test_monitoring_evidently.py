"""Evidently 0.7 adapters on real PneumoniaMNIST images (stand-in embedding and probabilities).

Evidently's own telemetry must stay off: the adapter sets ``DO_NOT_TRACK`` before importing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from radvigil.monitoring import ReferenceProfile
from radvigil.monitoring.evidently_report import evidently_embedding_drift, write_evidently_report
from tests.unit.monitoring_data import brighten, split, stand_in


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    ref, _ = split(400)
    return stand_in().profile(ref)


@pytest.mark.slow  # CPU-heavy: left out of `make check`, run by `make test`
def test_report_is_written_as_html_and_summarised(
    profile: ReferenceProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    data = stand_in()
    _, held = split(400)
    window = data.window(held[:100], brighten(data.images[held[:100]]))
    summary = write_evidently_report(profile, window, tmp_path / "reports" / "drift.html")
    assert os.environ["DO_NOT_TRACK"] == "1"
    text = summary.path.read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html>") and "</html>" in text.lower()
    assert 'src="http' not in text  # self-contained: no scripts fetched when opened
    assert summary.drifted_columns >= 3
    assert summary.columns["mean"] < 0.05  # Evidently's KS p-value for the brightness shift
    assert "site" in summary.columns and "predicted" in summary.columns


def test_embedding_verdict_matches_evidentlys_default(profile: ReferenceProfile) -> None:
    data = stand_in()
    _, held = split(400)
    state = np.random.get_state()[1].copy()
    clean = profile.prepare(data.window(held[:100]))
    bright = profile.prepare(data.window(held[:100], brighten(data.images[held[:100]])))
    reference = profile.reference.embeddings
    shifted = evidently_embedding_drift(reference, bright.embeddings)
    assert shifted.drift and shifted.method == "model" and shifted.score > 0.7
    assert evidently_embedding_drift(reference, clean.embeddings).score < 0.7
    np.testing.assert_array_equal(np.random.get_state()[1], state)
