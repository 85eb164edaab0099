"""The micro-batcher's one worker call per batch, and the per-batch assessment."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from radvigil.data.image import Image, ImageMeta
from radvigil.errors import InputError
from radvigil.service import assessment
from radvigil.service.batcher import MicroBatcher


def test_concurrent_jobs_share_one_worker_call_and_fail_alone() -> None:
    calls: list[tuple[list[int], str]] = []

    def run(jobs: list[int]) -> list[object]:
        calls.append((list(jobs), threading.current_thread().name))
        return [InputError(f"bad {j}") if j < 0 else j * 10 for j in jobs]

    async def main() -> list[object]:
        batcher = MicroBatcher(run, max_size=8, max_wait_ms=50)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(j) for j in (1, 2, -3, 4)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], InputError) and "bad -3" in str(results[2])
    assert [jobs for jobs, _ in calls] == [[1, 2, -3, 4]]
    assert calls[0][1] != threading.main_thread().name  # off the event loop


def test_a_failing_worker_call_fails_every_job_of_its_batch() -> None:
    def run(jobs: list[int]) -> list[object]:
        raise RuntimeError("model crashed")

    async def main() -> list[object]:
        batcher = MicroBatcher(run, max_size=4, max_wait_ms=20)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(j) for j in range(3)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


def _colour_photo() -> Image:
    """An image QC flags (``not_radiograph``), so it is a drifter even without a profile."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 300), dtype=np.uint8)
    meta = ImageMeta("png", 300, 300, 8, 3, colorfulness=90.0)
    return Image(pixels, meta)


@pytest.mark.parametrize("keep", [False, True])
def test_review_png_is_encoded_only_when_it_will_be_stored(keep: bool) -> None:
    served = SimpleNamespace(profile=None)
    before = assessment.review_pngs_encoded
    (result,) = assessment.assess_batch(
        served, [_colour_photo()], np.zeros((1, 8), np.float32), keep_review_png=keep
    )
    assert result.drifter and any("not_radiograph" in r for r in result.reasons)
    assert (result.review_png is not None) is keep
    assert assessment.review_pngs_encoded - before == int(keep)


def _calm_radiograph() -> Image:
    """A grey film no check flags: not routed to review (no profile, no quality issue)."""
    pixels = np.tile(np.linspace(40, 200, 256, dtype=np.uint8), (256, 1))
    return Image(pixels, ImageMeta("png", 256, 256, 8, 1, colorfulness=0.0))


@pytest.mark.parametrize("budgeted", [False, True])
def test_a_budgeted_sites_unrouted_study_keeps_its_review_image(budgeted: bool) -> None:
    """A budgeted queue may offer any of the site's studies, so their image is kept even when
    they are not routed; other sites keep routed studies' images only."""
    from radvigil.service import inference

    served = SimpleNamespace(
        profile=None,
        classes=["normal", "pneumonia"],
        findings=["pneumonia"],
        thresholds={"pneumonia": 0.5},
        site_thresholds={},
        size=8,
        run=lambda batch: (np.array([[0.9, 0.1]], np.float32), np.zeros((1, 8), np.float32)),
    )
    job = inference.Job(
        served, image=_calm_radiograph(), keep_review_png=True, keep_unrouted_png=budgeted
    )
    (scored,) = inference.score([job])
    assert isinstance(scored, inference.Scored) and not scored.assessment.routed
    assert (scored.assessment.review_png is not None) is budgeted
