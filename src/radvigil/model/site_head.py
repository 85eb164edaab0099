"""A site head: the shipped model's output corrected on a site's labelled cases, over frozen
embeddings, and a screening threshold fitted on the site's whole pool.

The cheapest fine-tune that can use a few dozen labels: the network stays as shipped; one
logistic layer over [the model's logit, the reduced embeddings] is fitted on the site's labels,
shrunk toward the shipped model (slope 1, offset 0, embedding weights 0), so 25 labels move it
only as far as they can support. Labels a policy chose for being near the threshold suit the
head (a fit of P(finding | case) stays unbiased when cases are chosen on the case alone), but
not a threshold: the sensitivity among hard chosen positives is not the site's. So
:func:`pool_threshold` counts every case of the site's pool once, a labelled case by its label,
an unlabelled one by the head's probability. Written here because no library fits a logistic
layer with an offset and a prior centred on the shipped model (scikit-learn shrinks toward 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit

from radvigil.errors import DataError

_CLIP = 1e-6


@dataclass(frozen=True)
class SiteHead:
    """``P(finding) = sigmoid(slope * logit(p_model) + offset + weights . standardised(e))``."""

    slope: float
    offset: float
    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n: int

    def predict(self, probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """The site-corrected probability of the finding per case."""
        return expit(self._logits(probs, embeddings))

    def _logits(self, probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        z = (np.asarray(embeddings, dtype=float) - self.mean) / self.scale
        return self.slope * _logit(probs) + self.offset + z @ self.weights


def _logit(probs: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(np.asarray(probs, dtype=float), _CLIP, 1 - _CLIP)))


def fit_site_head(
    probs: np.ndarray,
    embeddings: np.ndarray,
    positive: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    strength: float = 10.0,
    anchor: float = 1.0,
) -> SiteHead:
    """Fit the head on the labelled cases by penalised maximum likelihood (L-BFGS).

    Args:
        probs: the shipped model's probability of the finding, one per labelled case.
        embeddings: their reduced embeddings (cases x components).
        positive: whether each case has the finding.
        reference: embeddings that fix the standardisation (the site's whole pool, unlabelled
            cases included); the labelled cases when None.
        strength: L2 penalty on the embedding weights (standardised units).
        anchor: L2 penalty pulling slope to 1 and offset to 0 (the shipped model).

    Raises:
        DataError: no labelled case, or inputs that do not line up.
    """
    x = np.asarray(embeddings, dtype=float)
    y = np.asarray(positive, dtype=float)
    base = _logit(probs)
    if y.size == 0:
        raise DataError("a site head needs at least one labelled case")
    if x.shape[0] != y.size or base.size != y.size:
        raise DataError(
            f"{base.size} probabilities, {x.shape[0]} embeddings, {y.size} labels: must match"
        )
    ref = x if reference is None else np.asarray(reference, dtype=float)
    mean, scale = ref.mean(axis=0), ref.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        slope, offset, w = theta[0], theta[1], theta[2:]
        u = slope * base + offset + z @ w
        nll = float(np.sum(np.logaddexp(0.0, u) - y * u))
        r = expit(u) - y
        value = nll + 0.5 * strength * float(w @ w)
        value += 0.5 * anchor * ((slope - 1.0) ** 2 + offset**2)
        grad = np.concatenate(
            [
                [r @ base + anchor * (slope - 1.0), r.sum() + anchor * offset],
                z.T @ r + strength * w,
            ]
        )
        return value, grad

    start = np.zeros(2 + z.shape[1])
    start[0] = 1.0
    theta = minimize(loss, start, jac=True, method="L-BFGS-B").x
    return SiteHead(float(theta[0]), float(theta[1]), theta[2:], mean, scale, int(y.size))


def choose_strength(
    probs: np.ndarray,
    embeddings: np.ndarray,
    positive: np.ndarray,
    strengths: Sequence[float],
    *,
    reference: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """The embedding-weight penalty among ``strengths`` with the lowest out-of-fold log loss on
    the labelled cases (stratified folds); the largest (the head nearest the shipped model)
    when there are too few cases of a class to cross-validate."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(positive, dtype=bool)
    options = sorted(strengths)
    if min(int(y.sum()), int((~y).sum())) < folds:
        return options[-1]
    x = np.asarray(embeddings, dtype=float)
    p = np.asarray(probs, dtype=float)
    losses = np.zeros(len(options))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit, judge in splitter.split(x, y):
        for i, strength in enumerate(options):
            head = fit_site_head(p[fit], x[fit], y[fit], reference=reference, strength=strength)
            q = np.clip(head.predict(p[judge], x[judge]), _CLIP, 1 - _CLIP)
            losses[i] -= float(np.sum(np.where(y[judge], np.log(q), np.log(1 - q))))
    return options[int(np.argmin(losses))]


def pool_threshold(scores: np.ndarray, positive_prob: np.ndarray, target: float) -> float:
    """The largest threshold whose expected sensitivity over the whole pool reaches ``target``.

    Args:
        scores: the score each pool case is flagged on (flagged when ``score >= threshold``).
        positive_prob: per pool case, 1/0 for a labelled case's label, the head's probability
            of the finding for an unlabelled one.
        target: sensitivity to reach, in (0, 1].

    Raises:
        DataError: the pool is empty or holds no expected positive case.
    """
    s = np.asarray(scores, dtype=float)
    w = np.asarray(positive_prob, dtype=float)
    if not 0.0 < target <= 1.0:
        raise DataError(f"target sensitivity must be in (0, 1], got {target}")
    if s.size == 0 or w.sum() <= 0:
        raise DataError("the pool holds no expected positive case to fit a threshold on")
    order = np.argsort(-s, kind="stable")
    captured = np.cumsum(w[order]) / w.sum()
    return float(s[order][int(np.argmax(captured >= target - 1e-12))])
