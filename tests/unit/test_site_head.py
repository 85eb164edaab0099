"""The site head (a logistic layer over the shipped logit and reduced embeddings) and the
pool-wide screening threshold that judges policy-chosen labels fairly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from radvigil.errors import DataError
from radvigil.metrics import threshold_for_sensitivity
from radvigil.model.site_head import choose_strength, fit_site_head, pool_threshold


def _site(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shipped model that misses half the signal at the new site: the finding depends on its
    logit and on one embedding direction it ignores; its probabilities are shifted upwards."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, 4))
    shipped_logit = rng.normal(size=n)
    truth = expit(1.5 * shipped_logit + 2.0 * embeddings[:, 0])
    positive = rng.random(n) < truth
    return expit(shipped_logit + 1.5), embeddings, positive


def test_head_learns_what_the_shipped_model_misses() -> None:
    probs, embeddings, positive = _site(200, seed=0)
    head = fit_site_head(probs, embeddings, positive, strength=1.0)
    fresh_probs, fresh_embeddings, fresh_positive = _site(2000, seed=1)
    before = roc_auc_score(fresh_positive, fresh_probs)
    after = roc_auc_score(fresh_positive, head.predict(fresh_probs, fresh_embeddings))
    assert after > before + 0.05
    assert head.weights[0] > 1.0 and np.all(np.abs(head.weights[1:]) < 0.5)


def test_a_strong_prior_keeps_the_shipped_model() -> None:
    probs, embeddings, positive = _site(30, seed=2)
    head = fit_site_head(probs, embeddings, positive, strength=1e6, anchor=1e6)
    np.testing.assert_allclose(head.predict(probs, embeddings), probs, atol=1e-3)


def test_one_class_of_labels_still_gives_a_finite_head() -> None:
    probs, embeddings, _ = _site(10, seed=3)
    head = fit_site_head(probs, embeddings, np.ones(10, bool))
    assert np.all(np.isfinite(head.predict(probs, embeddings)))


def test_head_refuses_no_labels_and_misaligned_inputs() -> None:
    with pytest.raises(DataError, match="at least one labelled case"):
        fit_site_head(np.array([]), np.zeros((0, 3)), np.array([], bool))
    with pytest.raises(DataError, match="must match"):
        fit_site_head(np.array([0.2, 0.7]), np.zeros((3, 2)), np.array([True, False]))


def test_pool_threshold_with_every_label_known_is_the_plain_one() -> None:
    rng = np.random.default_rng(4)
    positive = rng.random(300) < 0.4
    scores = np.clip(rng.normal(0.3 + 0.4 * positive, 0.2), 0, 1)
    expected = threshold_for_sensitivity(positive, scores, 0.97)
    assert pool_threshold(scores, positive.astype(float), 0.97) == pytest.approx(expected)


def test_pool_threshold_counts_unlabelled_cases_by_their_probability() -> None:
    # Four cases expected to hold 0.5 + 0.5 + 1 + 2 x 0 positives: the top two of score hold 1.5
    # of 2 expected positives (0.75), the top three all of them.
    scores = np.array([0.9, 0.8, 0.4, 0.2, 0.1])
    expected = np.array([1.0, 0.5, 0.5, 0.0, 0.0])
    assert pool_threshold(scores, expected, 0.75) == 0.8
    assert pool_threshold(scores, expected, 0.9) == 0.4
    with pytest.raises(DataError, match="no expected positive"):
        pool_threshold(scores, np.zeros(5), 0.9)
    with pytest.raises(DataError, match=r"in \(0, 1\]"):
        pool_threshold(scores, expected, 1.5)


def test_near_threshold_labels_bias_their_own_threshold_but_not_the_pool_one() -> None:
    """40 labels chosen nearest an operating threshold: the cut reaching sensitivity 0.98 on them
    flags nearly every normal when the band sits low, and misses positives when it sits high;
    fitted on the whole pool it reaches the target either way."""
    probs, embeddings, positive = _site(3000, seed=5)

    def rates(scores: np.ndarray, cut: float) -> tuple[float, float]:
        flagged = scores >= cut
        return float(flagged[positive].mean()), float((~flagged[~positive]).mean())

    fitted = {}
    for band in (0.3, 0.6):
        chosen = np.argsort(np.abs(probs - band))[:40]
        head = fit_site_head(
            probs[chosen], embeddings[chosen], positive[chosen], reference=embeddings
        )
        scores = head.predict(probs, embeddings)
        expected = scores.copy()
        expected[chosen] = positive[chosen]
        on_pool = rates(scores, pool_threshold(scores, expected, 0.98))
        on_labels = rates(scores, threshold_for_sensitivity(positive[chosen], scores[chosen], 0.98))
        assert on_pool[0] >= 0.97
        fitted[band] = on_pool, on_labels
    (pool_low, labels_low), (_, labels_high) = fitted[0.3], fitted[0.6]
    assert labels_low[1] < pool_low[1] - 0.05
    assert labels_high[0] < 0.92


def test_cross_validation_shrinks_a_head_that_few_labels_cannot_support() -> None:
    """Pure-noise embeddings: out-of-fold log loss prefers the strongest penalty; with a real
    signal in the embeddings it prefers a weaker one; too few positives keep the strongest."""
    rng = np.random.default_rng(6)
    probs = expit(rng.normal(size=120))
    positive = rng.random(120) < probs
    noise = rng.normal(size=(120, 16))
    strengths = (0.1, 1.0, 1000.0)
    assert choose_strength(probs, noise, positive, strengths) == 1000.0
    signal_probs, signal, signal_positive = _site(120, seed=7)
    assert choose_strength(signal_probs, signal, signal_positive, strengths) < 1000.0
    few = np.zeros(120, bool)
    few[:3] = True
    assert choose_strength(probs, noise, few, strengths) == 1000.0
