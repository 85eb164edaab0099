"""Per-case guards on real bundled Kermany images: inverted, cropped/zoomed, rotated, gamma-changed.

The guard bands come from the bundled validation images (the reference a trained model's profile
holds); the cases are bundled test images, changed with ``radvigil.data.shifts`` or inverted.
A raised guard makes the case a drifter (routed to review) with the guard's reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from radvigil.data.shifts import apply_shift, get_shift
from radvigil.monitoring import (
    GUARD_NAMES,
    check_guards,
    guard_table,
    image_stats,
    image_stats_frame,
    is_drifter,
)
from radvigil.monitoring.guards import guard_bands
from tests.unit.monitoring_data import split, stand_in


def _pixels(bundled: Path, split_name: str) -> list[np.ndarray]:
    frame = pd.read_csv(bundled / "manifest.csv")
    paths = frame.loc[frame["split"] == split_name, "path"]
    return [np.asarray(PILImage.open(bundled / p).convert("L")) for p in paths]


@pytest.fixture(scope="module")
def bands(bundled: Path) -> dict[str, tuple[float, float]]:
    return guard_bands(image_stats_frame(_pixels(bundled, "val")))


@pytest.fixture(scope="module")
def cases(bundled: Path) -> list[np.ndarray]:
    return _pixels(bundled, "test")[::3]


def _flagged(cases: list[np.ndarray], bands, change) -> pd.DataFrame:
    return guard_table(image_stats_frame([change(p) for p in cases]), bands)


def test_unshifted_cases_are_rarely_flagged(bundled: Path, bands) -> None:
    """All guards together on the whole unprocessed development hold-out: at most 5 %."""
    flagged = _flagged(_pixels(bundled, "test"), bands, lambda p: p)
    assert flagged.to_numpy().any(axis=1).mean() <= 0.05


def test_inverted_polarity_is_caught(cases, bands) -> None:
    flagged = _flagged(cases, bands, lambda p: 255 - p)
    assert flagged["inverted_polarity"].mean() >= 0.95


def test_crop_zoom_and_rotation_raise_the_field_of_view_guard(cases, bands) -> None:
    zoomed = _flagged(cases, bands, lambda p: apply_shift(p, get_shift("zoom", zoom=1.5), seed=0))
    rotated = _flagged(cases, bands, lambda p: np.ascontiguousarray(np.rot90(p)))
    assert zoomed["field_of_view"].mean() >= 0.5
    assert rotated.to_numpy().any(axis=1).mean() >= 0.9


def test_strong_gamma_raises_the_intensity_guard(cases, bands) -> None:
    gamma = get_shift("gamma", gamma=3.0)
    flagged = _flagged(cases, bands, lambda p: apply_shift(p, gamma, seed=0))
    assert flagged["intensity_lut"].mean() >= 0.5


def test_a_guard_routes_the_case_with_its_reason(cases, bands) -> None:
    raised = check_guards(image_stats(255 - cases[0]), bands)
    assert raised[0].guard == "inverted_polarity"  # the bright periphery may add field_of_view
    assert "inverted" in raised[0].reason and "outside the reference band" in raised[0].reason
    profile = stand_in().profile(split(300)[0])
    drifter, reasons = is_drifter(None, [], profile, guards=raised)
    assert drifter and reasons[0] == f"guard inverted_polarity: {raised[0].reason}"
    assert check_guards(image_stats(cases[0]), {}) == []  # an old profile without the columns
    assert set(GUARD_NAMES) == {
        "inverted_polarity",
        "field_of_view",
        "intensity_lut",
        "noise",
        "sharpening",
        "compression",
    }


STRONG_PROCESSING = {
    "noise": [get_shift("gaussian_noise", sigma=10), get_shift("speckle", sigma=0.12)],
    "sharpening": [get_shift("sharpen", amount=2.0)],
    "compression": [get_shift("jpeg", quality=20)],
}


@pytest.mark.parametrize(
    ("guard", "shift"),
    [(g, s) for g, shifts in STRONG_PROCESSING.items() for s in shifts],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_strong_processing_raises_its_own_guard(cases, bands, guard, shift) -> None:
    flagged = _flagged(cases, bands, lambda p: apply_shift(p, shift, seed=3))
    assert flagged[guard].mean() >= 0.8
    assert flagged.to_numpy().any(axis=1).mean() >= 0.8


MILD_PROCESSING = [
    get_shift("gaussian_noise", sigma=3),
    get_shift("speckle", sigma=0.03),
    get_shift("sharpen", amount=0.5),
    get_shift("jpeg", quality=60),
]


@pytest.mark.parametrize("shift", MILD_PROCESSING, ids=lambda s: s.name)
def test_mild_processing_is_not_routed_wholesale(cases, bands, shift) -> None:
    """The suite's mild strengths (what a hospital routinely does) stay mostly inside the bands
    (the band floors); without them 62-100 % of these studies were flagged."""
    flagged = _flagged(cases, bands, lambda p: apply_shift(p, shift, seed=3))
    assert flagged[["noise", "sharpening", "compression"]].to_numpy().any(axis=1).mean() <= 0.2


def test_added_noise_does_not_pass_for_sharpening(cases, bands) -> None:
    """``hf_ratio`` discounts what white noise explains, so mild noise raises no guard."""
    noisy = _flagged(cases, bands, lambda p: apply_shift(p, get_shift("gaussian_noise", sigma=3)))
    assert noisy["sharpening"].mean() <= 0.02


def test_band_floors_sit_above_clean_reference_films(bands) -> None:
    assert bands["noise_sigma"][1] >= 5.0  # a 5 grey-level noise floor over 0.5-level films
    assert bands["hf_ratio"][1] > 1.15 * 1.3 and bands["blockiness"][1] > 1.6


def test_processing_guards_rarely_flag_the_other_acquisition_batch(bundled: Path, bands) -> None:
    """The site's unprocessed films (Kermany's test folder) are not mistaken for processed ones:
    every guard together flags at most 5 % of them, as of the development hold-out."""
    stream = pd.read_csv(bundled / "stream.csv")
    paths = stream.loc[stream["acquisition_batch"] == "test-folder", "path"][::2]
    films = [np.asarray(PILImage.open(bundled / p).convert("L")) for p in paths]
    flagged = guard_table(image_stats_frame(films), bands)
    assert flagged[["noise", "sharpening", "compression"]].to_numpy().any(axis=1).mean() <= 0.02
    assert flagged.to_numpy().any(axis=1).mean() <= 0.05


def test_processing_guard_reason_names_the_statistic(cases, bands) -> None:
    raised = check_guards(image_stats(apply_shift(cases[0], get_shift("jpeg", quality=15))), bands)
    reasons = {g.guard: g.reason for g in raised}
    assert "recompression" in reasons["compression"]
    assert "blockiness" in reasons["compression"]
