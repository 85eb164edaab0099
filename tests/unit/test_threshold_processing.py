"""The operating threshold with a margin for processing (``threshold_processing``, issue #33)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radvigil.data.shifts import PROCESSING_SUITE, mild_suite
from radvigil.model.dataset import ArraySet
from radvigil.model.train import operating_thresholds, processed_copies
from radvigil.task import Task

TASK = Task(name="t", classes=["normal", "pneumonia"], findings=["pneumonia"])


def _val(scores: list[float], labels: list[int]) -> tuple[np.ndarray, ArraySet]:
    probs = np.array([[1 - s, s] for s in scores])
    images = np.zeros((len(labels), 8, 8), np.uint8)
    return probs, ArraySet(images, np.array(labels), pd.DataFrame({"path": list("abcdefgh")}))


def test_a_processed_copy_that_lowers_a_positive_lowers_the_threshold() -> None:
    # eight cases, four positives; on clean films the weakest positive scores 0.6, but one
    # processed copy drags it to 0.3: the threshold must still catch it there.
    clean, val = _val([0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], [0, 0, 0, 0, 1, 1, 1, 1])
    strict = Task(**{**TASK.model_dump(), "target_sensitivity": {"pneumonia": 1.0}})
    harmless = clean.copy()
    harmful = clean.copy()
    harmful[4] = [0.7, 0.3]
    assert operating_thresholds(clean, strict, val) == {"pneumonia": 0.6}
    assert operating_thresholds(clean, strict, val, [harmless]) == {"pneumonia": 0.6}
    assert operating_thresholds(clean, strict, val, [harmless, harmful]) == {"pneumonia": 0.3}


def test_processed_copies_are_every_mild_shift_seeded_per_image() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(40, 200, size=(3, 32, 32), dtype=np.uint8)
    copies = list(processed_copies(images))
    assert len(copies) == len(PROCESSING_SUITE) == len(mild_suite())
    assert all(c.shape == images.shape and c.dtype == np.uint8 for c in copies)
    assert all(not np.array_equal(c, images) for c in copies)  # each shift changed the pixels
    again = list(processed_copies(images))
    assert all(np.array_equal(a, b) for a, b in zip(copies, again, strict=True))
