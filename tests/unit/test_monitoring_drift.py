"""Input drift detectors on real PneumoniaMNIST images: MMD, domain classifier, KS, chi-squared.

Embeddings are the stand-in of ``monitoring_data`` (PCA of real pixels), not the trained
network's; the brightness shift is applied to the real pixels with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from radvigil.errors import ConfigError
from radvigil.monitoring import ReferenceProfile, detector_names, make_detector
from radvigil.monitoring.kernels import mmd_test
from radvigil.monitoring.stattests import adjust_pvalues
from radvigil.monitoring.windows import WindowData
from tests.unit.monitoring_data import brighten, split, stand_in


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    ref, _ = split(400)
    return stand_in().profile(ref)


@pytest.fixture(scope="module")
def held() -> np.ndarray:
    return split(400)[1]


def _naive_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-((a - b) ** 2).sum() / (2 * bandwidth**2)))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_statistic_matches_the_textbook_formula() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, size=(9, 3))
    test = mmd_test(x, y, n_permutations=0, alpha=0.05, rng=rng)
    assert test.statistic == pytest.approx(_naive_mmd2(x, y, test.bandwidth))


@pytest.mark.slow  # CPU-heavy: left out of `make check`, run by `make test`
def test_mmd_p_values_are_uniform_without_drift(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    detector = make_detector("mmd", n_permutations=100)
    data = stand_in()
    p_values = []
    for seed in range(50):
        index = np.random.default_rng(seed).choice(held, 100, replace=False)
        p_values.append(detector.run(profile, data.window(index), seed=seed).p_value)
    p_values = np.array(p_values)
    assert (p_values < 0.05).sum() <= 7  # expected 2.5; P(>= 8) < 0.5% under Binomial(50, 5%)
    assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_mmd_detects_a_20_percent_brightness_shift_at_n_100(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    data = stand_in()
    index = held[:100]
    result = make_detector("mmd").run(profile, data.window(index, brighten(data.images[index])))
    assert result.drift and result.p_value < 0.01
    assert result.threshold_source == "default"


def test_mmd_500_vs_500_in_16_dimensions_keeps_its_level() -> None:
    # Its time is measured by bench/drift_power.py (timed unit tests flake on a loaded machine).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 16)), rng.normal(size=(500, 16))
    test = mmd_test(x, y, n_permutations=200, alpha=0.05, rng=rng)
    assert test.p_value > 0.01


def test_domain_classifier_flags_brightness_and_holds_level(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    detector = make_detector("domain_classifier", n_permutations=100)
    data = stand_in()
    alarms = 0
    for seed in range(20):
        index = np.random.default_rng(100 + seed).choice(held, 100, replace=False)
        alarms += detector.run(profile, data.window(index), seed=seed).drift
    assert alarms <= 4  # expected 1
    shifted = detector.run(profile, data.window(held[:100], brighten(data.images[held[:100]])))
    assert shifted.drift and shifted.statistic > 0.7


def test_ks_on_image_stats_flags_brightness_not_a_clean_window(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    detector = make_detector("image_stats")
    data = stand_in()
    clean = detector.run(profile, data.window(held[:100]))
    shifted = detector.run(profile, data.window(held[:100], brighten(data.images[held[:100]])))
    assert not clean.drift
    assert shifted.drift
    assert {"mean", "p50"} <= set(shifted.details["drifted_columns"])
    assert shifted.details["max_psi"] > 0.25  # a major shift
    assert shifted.effect_size > 0.5  # the largest shift in reference SDs
    assert shifted.details["correction"] == "bh"


def test_image_stats_effect_size_keeps_ranking_when_the_p_value_saturates(
    profile: ReferenceProfile, held: np.ndarray
) -> None:
    detector = make_detector("image_stats")
    data = stand_in()
    pixels = data.images[held[:100]]
    results = [
        detector.run(profile, data.window(held[:100], brighten(pixels, f))) for f in (1.6, 2.2, 3)
    ]
    effects = [r.effect_size for r in results]
    assert effects == sorted(effects) and effects[-1] > 1.5 * effects[0]
    assert results[-1].details["times_threshold"] > 10


def test_chi_squared_flags_a_new_site_mix(profile: ReferenceProfile, held: np.ndarray) -> None:
    data = stand_in()
    sites = ["A"] * 60 + ["B"] * 40  # the reference saw only site A
    result = make_detector("metadata").run(profile, data.window(held[:100], sites=sites))
    assert result.drift and result.details["drifted_columns"] == ["site"]
    assert result.details["test"] == "chi2"


def test_ood_rate_flags_inverted_images(profile: ReferenceProfile, held: np.ndarray) -> None:
    data = stand_in()
    detector = make_detector("ood_rate")
    assert not detector.run(profile, data.window(held[:100])).drift
    inverted = detector.run(profile, data.window(held[:100], 255 - data.images[held[:100]]))
    assert inverted.drift and inverted.details["drifters"] > 50


def test_multiple_testing_corrections() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 1.0])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.04, 0.16 / 3, 0.16 / 3, 0.5])


def test_unknown_detector_lists_the_registered_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown detector 'kl'; valid detectors: \[") as exc:
        make_detector("kl")
    assert all(name in exc.value.message for name in detector_names())
    with pytest.raises(ConfigError, match="detector 'mmd': n_perms: Extra inputs"):
        make_detector("mmd", n_perms=10)


def _gaussian_profile(seed: int, n: int = 262, dim: int = 12) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([1, 1], n)
    return ReferenceProfile.build(
        rng.normal(size=(n, dim)),
        probs,
        None,
        None,
        None,
        class_names=["a", "b"],
        n_components=8,
        seed=seed,
    )


def test_ood_rate_false_alarms_stay_at_the_level_when_the_threshold_is_an_estimate() -> None:
    """Many references of 262 rows, unshifted windows of 200: the beta-binomial null keeps false
    alarms at or under 5 % over references, where a binomial at the nominal 1 % alarms far more
    often (the threshold's own sampling error: the gap the Kermany null showed at n = 100-200)."""
    detector = make_detector("ood_rate")
    alarms = naive = total = 0
    for seed in range(100):
        profile = _gaussian_profile(seed)
        assert profile.ood.n_fitted == 262 and profile.ood.exceedance_prior() is not None
        rng = np.random.default_rng(1000 + seed)
        for _ in range(3):
            window = rng.normal(size=(200, 12))
            scores = profile.ood.score(profile.projection.reduce(window))
            hits = int((scores > profile.ood.threshold).sum())
            result = detector.run(profile, _window(window))
            assert result.threshold_source == "default" and result.details["drifters"] == hits
            alarms += result.drift
            naive += hits > stats.binom.isf(0.05, 200, 0.01)
            total += 1
    # level 5 % (measured 3.5 % over 600 windows of 150 references; the binomial 14 %)
    assert alarms / total <= 0.06
    assert naive / total >= 2 * alarms / total


def _window(embeddings: np.ndarray) -> WindowData:
    return WindowData(embeddings=embeddings)


def test_ood_rate_counts_survive_the_profile_file(tmp_path) -> None:
    profile = _gaussian_profile(0)
    loaded = ReferenceProfile.from_path(profile.to_path(tmp_path))
    assert loaded.ood.exceedance_prior() == profile.ood.exceedance_prior()
    assert loaded.ood.n_fitted == 262 and loaded.ood.n_above == profile.ood.n_above
