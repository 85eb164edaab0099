"""Reference profile, OOD drifters and threshold calibration on real PneumoniaMNIST images.

Embeddings and probabilities come from the stand-in model of ``monitoring_data`` (PCA of real
pixels + calibrated logistic regression), not from the trained network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radvigil.errors import ConfigError, DataError, InputError, RadvigilWarning
from radvigil.monitoring import (
    Calibration,
    ReferenceProfile,
    calibrate,
    is_drifter,
    make_detector,
    ood_score,
)
from tests.unit.monitoring_data import CLASSES, brighten, split, stand_in


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    ref, _ = split(400)
    return stand_in().profile(ref, n_components=8, max_reference=300, info={"model": "m1"})


def test_build_keeps_a_capped_reduced_reference(profile: ReferenceProfile) -> None:
    assert profile.class_names == tuple(CLASSES)
    assert profile.projection.components.shape == (8, 32)
    assert profile.reference.embeddings.shape == (300, 8)
    assert profile.reference.probs.shape == (300, 2)
    assert profile.info["n_source"] == 400 and profile.info["model"] == "m1"
    assert profile.value_counts == {"site": {"A": 400}}


def test_profile_round_trips_through_one_file(profile: ReferenceProfile, tmp_path: Path) -> None:
    calibrated = profile.with_calibrations(
        [
            Calibration(
                detector="mmd",
                window_size=100,
                threshold=0.01,
                alpha=0.05,
                n_boot=50,
                leave_out=True,
            )
        ]
    )
    file = calibrated.to_path(tmp_path / "profile")
    assert [p.name for p in file.parent.iterdir()] == ["reference_profile.npz"]
    loaded = ReferenceProfile.from_path(file.parent)
    assert loaded.class_names == calibrated.class_names
    assert loaded.calibrations == calibrated.calibrations
    assert loaded.info == calibrated.info
    assert loaded.ood.threshold == calibrated.ood.threshold
    np.testing.assert_array_equal(loaded.projection.components, calibrated.projection.components)
    np.testing.assert_array_equal(loaded.reference.embeddings, calibrated.reference.embeddings)
    np.testing.assert_array_equal(loaded.reference.labels, calibrated.reference.labels)
    pd.testing.assert_frame_equal(loaded.reference.stats, calibrated.reference.stats)
    pd.testing.assert_frame_equal(loaded.reference.metadata, calibrated.reference.metadata)


def test_missing_profile_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no reference profile"):
        ReferenceProfile.from_path(tmp_path)


def test_raw_embeddings_are_reduced_and_others_refused(profile: ReferenceProfile) -> None:
    raw = stand_in().embed(stand_in().images[:3])
    reduced = profile.projection.reduce(raw)
    assert reduced.shape == (3, 8)
    np.testing.assert_array_equal(profile.projection.reduce(reduced), reduced)
    with pytest.raises(InputError, match="fit neither"):
        profile.projection.reduce(np.zeros((3, 5)))


def test_invalid_labels_are_refused() -> None:
    data = stand_in()
    ref, _ = split(50)
    with pytest.raises(InputError, match="class indices"):
        ReferenceProfile.build(
            data.embed(data.images[ref]),
            data.probs(data.images[ref]),
            np.full(50, 2),
            None,
            None,
            class_names=CLASSES,
        )


def test_ood_threshold_marks_about_one_percent_and_catches_inverted_images(
    profile: ReferenceProfile,
) -> None:
    data = stand_in()
    _, held = split(400)
    scores = profile.ood.score(profile.projection.reduce(data.embed(data.images[held])))
    assert np.mean(scores > profile.ood.threshold) < 0.05
    inverted = data.embed(255 - data.images[held[:20]])
    flags = [is_drifter(ood_score(profile, e), [], profile) for e in inverted]
    assert np.mean([f[0] for f in flags]) > 0.9
    assert "above the reference 99% quantile" in flags[0][1][0]


def test_quality_flags_make_drifters(profile: ReferenceProfile) -> None:
    drifter, reasons = is_drifter(0.0, {"overexposed": True, "rotated": False}, profile)
    assert drifter and reasons == ["quality flag: overexposed"]
    assert is_drifter(None, ["rotated"], profile, counted_flags=["overexposed"]) == (False, [])


def test_calibrated_threshold_holds_the_false_alarm_rate(profile: ReferenceProfile) -> None:
    detector = make_detector("image_stats")
    calibration = calibrate(detector, profile, window_size=50, n_boot=60, alpha=0.1, seed=1)
    assert calibration.leave_out and calibration.threshold > 0
    calibrated = profile.with_calibrations([calibration])
    data = stand_in()
    _, held = split(400)
    rng = np.random.default_rng(3)
    clean = [
        detector.run(calibrated, data.window(rng.choice(held, 50, replace=False)))
        for _ in range(20)
    ]
    assert all(r.threshold_source == "calibrated" for r in clean)
    assert sum(r.drift for r in clean) <= 6
    shifted = detector.run(calibrated, data.window(held[:50], brighten(data.images[held[:50]])))
    assert shifted.drift


def test_calibration_refuses_a_constant_statistic(profile: ReferenceProfile) -> None:
    with pytest.raises(ConfigError, match="'metadata' gave no varying statistic"):
        calibrate(make_detector("metadata"), profile, window_size=50, n_boot=10)


def test_calibration_warns_when_the_reference_is_too_small(profile: ReferenceProfile) -> None:
    with pytest.warns(RadvigilWarning, match="too small to leave out"):
        calibration = calibrate(make_detector("bbsd"), profile, window_size=200, n_boot=10)
    assert not calibration.leave_out


def test_cross_fitted_ood_threshold_passes_about_the_nominal_share_of_new_cases() -> None:
    data = stand_in()
    reference, held = split(400)
    profile = data.profile(reference)
    reduced = profile.projection.reduce(data.embed(data.images[reference]))
    in_sample = np.quantile(profile.ood.score(reduced), 0.99)
    assert profile.ood.threshold > in_sample  # unseen cases score higher than fitted ones
    new = profile.ood.score(profile.projection.reduce(data.embed(data.images[held])))
    assert np.mean(new > profile.ood.threshold) <= 0.025
    assert np.mean(new > in_sample) >= np.mean(new > profile.ood.threshold)


def test_a_window_uses_the_largest_calibrated_size_not_above_its_own(
    profile: ReferenceProfile,
) -> None:
    detector = make_detector("image_stats")
    found = [calibrate(detector, profile, n, n_boot=20, seed=0) for n in (25, 50)]
    calibrated = profile.with_calibrations(found)
    assert calibrated.calibration_for("image_stats", 40).window_size == 25
    assert calibrated.calibration_for("image_stats", 200).window_size == 50
    assert calibrated.calibration_for("image_stats", 20) is None  # own test decides
