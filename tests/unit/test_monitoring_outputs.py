"""Output monitors on real PneumoniaMNIST: BBSD, BBSE, CBPE, ATC, labelled performance, concept.

Probabilities come from the stand-in of ``monitoring_data``: a logistic regression on a PCA of
real pixels, calibrated with isotonic regression on training data (not the trained network).
"""

from __future__ import annotations

import numpy as np
import pytest

from radvigil.monitoring import (
    DetectorResult,
    Monitor,
    ReferenceProfile,
    make_detector,
    monitor_config_from_dict,
)
from radvigil.monitoring.stattests import wilson_interval
from tests.unit.monitoring_data import brighten, split, stand_in


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    ref, _ = split(400)
    return stand_in().profile(ref)


@pytest.fixture(scope="module")
def held() -> np.ndarray:
    return split(400)[1]


def _resample(held: np.ndarray, share: float, n: int, seed: int) -> np.ndarray:
    """Held-out rows resampled (without replacement) to a pneumonia share of ``share``."""
    rng = np.random.default_rng(seed)
    labels = stand_in().labels[held]
    positives = rng.choice(held[labels == 1], round(n * share), replace=False)
    negatives = rng.choice(held[labels == 0], n - len(positives), replace=False)
    return np.concatenate([positives, negatives])


def test_bbse_recovers_a_resampled_prevalence(profile: ReferenceProfile, held: np.ndarray) -> None:
    index = _resample(held, 0.8, 180, seed=0)
    result = make_detector("label_shift").run(profile, stand_in().window(index))
    estimate = result.details["estimated_prevalence"]["pneumonia"]
    assert result.details["labelled_prevalence"]["pneumonia"] == pytest.approx(0.8, abs=0.01)
    assert abs(estimate - 0.8) < 0.1
    assert result.drift  # the reference is about half pneumonia
    assert sum(result.details["estimated_prevalence"].values()) == pytest.approx(1.0)


def test_bbsd_sees_the_label_shift_in_the_outputs(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    detector = make_detector("bbsd")
    assert not detector.run(profile, stand_in().window(held[:150])).drift
    shifted = detector.run(profile, stand_in().window(_resample(held, 0.9, 150, seed=1)))
    assert shifted.drift and list(shifted.details["classes"]) == ["pneumonia"]


def test_cbpe_estimates_accuracy_within_five_points(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    result = make_detector("cbpe").run(profile, stand_in().window(held))
    estimated = result.details["estimated"]["accuracy"]
    realised = result.details["realised"]["accuracy"]
    assert abs(estimated - realised) < 0.05
    sens = result.details["estimated"]["sensitivity"]["pneumonia"]
    assert abs(sens - result.details["realised"]["sensitivity"]["pneumonia"]) < 0.08
    assert not result.drift


def test_atc_estimates_accuracy_within_five_points(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    result = make_detector("atc").run(profile, stand_in().window(held))
    assert abs(result.details["estimated_accuracy"] - result.details["realised_accuracy"]) < 0.05


def test_atc_flags_the_accuracy_drop_of_halved_contrast(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    """Halved contrast costs the stand-in >10 points; ATC sees it, CBPE (calibration lost) less."""
    data = stand_in()
    flat = np.clip((data.images[held] - 128.0) * 0.5 + 128, 0, 255).astype(np.uint8)
    window = data.window(held, flat)
    atc = make_detector("atc").run(profile, window)
    cbpe = make_detector("cbpe").run(profile, window)
    assert atc.details["realised_accuracy"] < atc.details["reference_accuracy"] - 0.1
    assert atc.drift
    assert atc.details["estimated_accuracy"] < cbpe.details["estimated"]["accuracy"]


def test_performance_reports_wilson_and_bootstrap_intervals(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    data = stand_in()
    result = make_detector("performance", n_boot=50).run(profile, data.window(held[:200]))
    sens = result.details["sensitivity"]
    assert sens["ci"][0] <= sens["value"] <= sens["ci"][1]
    assert result.details["auc"]["ci"][0] <= result.details["auc"]["value"] <= 1
    assert not result.drift
    labels = data.labels[held[:200]].copy()
    labels[labels == 1] = np.where(np.arange((labels == 1).sum()) % 2 == 0, 0, 1)
    flipped = make_detector("performance", n_boot=0).run(
        profile, data.window(held[:200], labels=labels)
    )
    assert flipped.drift and flipped.details["specificity"]["value"] < 0.7


def test_performance_waits_for_enough_labels(profile: ReferenceProfile, held: np.ndarray) -> None:
    labels = np.full(100, -1)
    labels[:10] = stand_in().labels[held[:10]]
    result = make_detector("performance").run(profile, stand_in().window(held[:100], labels=labels))
    assert result.skipped == "10 labelled cases; at least 30 needed" and not result.drift


def test_concept_drift_needs_errors_up_and_inputs_stable(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    config = monitor_config_from_dict(
        {"detectors": {"image_stats": {}, "mmd": {}, "concept": {}}, "alerts": []}
    )
    monitor = Monitor(profile, config)
    data = stand_in()
    index = np.random.default_rng(0).choice(held, 150, replace=False)
    rng = np.random.default_rng(1)
    flipped = np.where(rng.random(150) < 0.3, 1 - data.labels[index], data.labels[index])
    concept = monitor.run(data.window(index, labels=flipped)).result("concept")
    assert concept.drift and concept.details["input_drift"] == []
    covariate = monitor.run(data.window(index, brighten(data.images[index]), labels=flipped))
    result = covariate.result("concept")
    assert not result.drift and "image_stats" in result.details["input_drift"]
    assert result.vetoed.startswith("input drift seen by")
    assert not monitor.run(data.window(index)).result("concept").drift


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(8, 10, 0.95)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_importance_weighted_accuracy_tracks_truth_without_reading_confidences(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    result = make_detector("iw_accuracy").run(profile, stand_in().window(held[:200]))
    d = result.details
    assert abs(d["estimated_accuracy"] - d["realised_accuracy"]) < 0.05
    assert d["reliable"] and d["effective_share"] > 0.5


def _context(**flags: tuple[bool, float]) -> dict[str, DetectorResult]:
    return {
        name: DetectorResult(
            name=name, statistic=1.0, drift=drift, details={"times_threshold": times}
        )
        for name, (drift, times) in flags.items()
    }


def test_estimate_check_calls_large_drift_without_an_estimated_drop_unverified(
    profile: ReferenceProfile,
) -> None:
    check = make_detector("estimate_check")
    window = stand_in().window(split(400)[1][:50])

    def verdict(**flags: tuple[bool, float]) -> str:
        return check.run(profile, window, context=_context(**flags)).details["verdict"]

    assert verdict(cbpe=(False, 0.1), image_stats=(True, 1.3)) == "ok"
    assert verdict(cbpe=(False, 0.1), image_stats=(True, 3.0)) == "unverified"
    assert verdict(cbpe=(True, 2.0), image_stats=(True, 3.0)) == "degraded"
    assert check.run(profile, window, context={}).skipped


def test_inverted_images_are_never_called_ok(profile: ReferenceProfile, held: np.ndarray) -> None:
    data = stand_in()
    config = monitor_config_from_dict(
        {
            "detectors": {
                "image_stats": {},
                "ood_rate": {},
                "cbpe": {},
                "atc": {},
                "iw_accuracy": {},
                "estimate_check": {},
            },
            "alerts": [],
        }
    )
    window = data.window(held[:100], 255 - data.images[held[:100]])
    report = Monitor(profile, config).run(window)
    assert report.result("estimate_check").details["verdict"] != "ok"
