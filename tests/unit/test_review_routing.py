"""Review routing beyond drifters: low confidence and the content-hashed audit sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radvigil.model.train import calibration_groups
from radvigil.monitoring import ReviewPolicy, audit_selected, review_reasons


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(n)]


def test_the_audit_sample_is_the_asked_share_and_the_same_on_every_call() -> None:
    images = _images(2000)
    chosen = [audit_selected(img, 0.25) for img in images]
    assert 0.22 < np.mean(chosen) < 0.28
    assert chosen == [audit_selected(img.copy(), 0.25) for img in images]  # content, not identity
    assert not any(audit_selected(img, 0.0) for img in images)
    assert all(audit_selected(img, 1.0) for img in images)
    nested = [audit_selected(img, 0.1) for img in images]
    assert all(c for n, c in zip(nested, chosen, strict=True) if n)  # a smaller share is a subset


def test_reasons_name_low_confidence_and_the_audit() -> None:
    image = _images(1)[0]
    policy = ReviewPolicy(confidence_below=0.7, audit_share=1.0)
    reasons = review_reasons(0.55, image, policy)
    assert reasons[0].startswith("low confidence: 0.55 is below the review level 0.70")
    assert reasons[1].startswith("audit sample: 100% of studies")
    assert review_reasons(0.9, image, ReviewPolicy(audit_share=0.0)) == []


@pytest.mark.parametrize("bad", [{"confidence_below": 0.0}, {"audit_share": 1.5}])
def test_a_policy_out_of_range_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        ReviewPolicy(**bad)


def test_calibration_groups_split_validation_by_source() -> None:
    frame = pd.DataFrame({"source_dataset": ["kermany", "clinician_feedback", "kermany"]})
    everything, feedback, kermany = calibration_groups(frame)
    assert everything.all()
    assert feedback.tolist() == [False, True, False] and kermany.tolist() == [True, False, True]
    (single,) = calibration_groups(frame.iloc[[0, 2]])
    assert single.all()
    (plain,) = calibration_groups(pd.DataFrame({"path": ["a", "b"]}))
    assert plain.all()
