"""The reference embedding space: a PCA projection and a Mahalanobis out-of-distribution scorer.

Both keep only plain arrays (mean, components, location, precision), so a profile stores them
in an ``.npz`` without pickle and a model version can score a new case with two matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from radvigil.errors import InputError


@dataclass(frozen=True)
class Projection:
    """PCA fitted on reference embeddings: ``reduce(x) = (x - mean) @ components.T``."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @classmethod
    def fit(cls, embeddings: np.ndarray, n_components: int, seed: int) -> Projection:
        """Fit on (N, D) embeddings, keeping at most ``min(n_components, N - 1, D)`` axes."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or len(x) < 3 or not np.isfinite(x).all():
            raise InputError(f"reference embeddings must be finite (N>=3, D), got {x.shape}")
        k = max(1, min(n_components, len(x) - 1, x.shape[1]))
        pca = PCA(n_components=k, random_state=seed).fit(x)
        return cls(
            pca.mean_.astype(np.float32),
            pca.components_.astype(np.float32),
            pca.explained_variance_ratio_.astype(np.float32),
        )

    @property
    def input_dim(self) -> int:
        return int(self.components.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def reduce(self, embeddings: np.ndarray) -> np.ndarray:
        """Project raw (N, D) embeddings to (N, k); pass already-reduced (N, k) ones through."""
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim == 2 and x.shape[1] == self.input_dim:
            return (x - self.mean) @ self.components.T
        if x.ndim == 2 and x.shape[1] == self.n_components:
            return x
        raise InputError(
            f"embeddings of shape {x.shape} fit neither the model's {self.input_dim}-D embedding "
            f"nor the profile's {self.n_components}-D reduction"
        )


@dataclass(frozen=True)
class MahalanobisScorer:
    """Mahalanobis distance to the reference in PCA space (Ledoit-Wolf shrunk covariance).

    ``threshold`` is the reference's ``quantile`` of the score: cases above it are drifters.
    ``n_fitted`` and ``n_above`` count cross-fitted reference scores (patient-level folds where
    the profile knows patients) and those above the threshold: the threshold is an estimate,
    and :meth:`exceedance_prior` turns the counts into its uncertainty.
    """

    location: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    n_fitted: int = 0
    n_above: int = 0

    @classmethod
    def fit(
        cls,
        reduced: np.ndarray,
        quantile: float = 0.99,
        unseen_scores: np.ndarray | None = None,
    ) -> MahalanobisScorer:
        """Fit on (N, k) reduced reference embeddings.

        The threshold is the ``quantile`` of ``unseen_scores`` (cross-fitted scores of the same
        cases, see :func:`cross_fitted_scores`) when given: in-sample scores run low, so a
        threshold at their 99th percentile lets about twice the nominal 1% of new
        in-distribution cases through.
        """
        lw = LedoitWolf().fit(np.asarray(reduced, dtype=np.float64))
        scorer = cls(lw.location_, lw.precision_, float("inf"), quantile)
        scores = scorer.score(reduced) if unseen_scores is None else unseen_scores
        threshold = float(np.quantile(scores, quantile))
        above = int(np.count_nonzero(scores > threshold))
        return cls(lw.location_, lw.precision_, threshold, quantile, len(scores), above)

    def exceedance_prior(self) -> tuple[float, float] | None:
        """Beta(a, b) of the share of new in-distribution cases above ``threshold``.

        The threshold sits between the reference's order statistics, with ``n_above`` of
        ``n_fitted`` exchangeable scores above it, so a new case's chance to pass it is
        Beta(n_above + 1, n_fitted - n_above) before any window is seen: about 1.5 % for a 99th
        percentile of 262 rows, with a 95 % upper bound near 3 %, not a fixed 1 %. None for a
        scorer stored without the counts (profiles written before they were kept).
        """
        if self.n_fitted <= self.n_above:
            return None
        return float(self.n_above + 1), float(self.n_fitted - self.n_above)

    def score(self, reduced: np.ndarray) -> np.ndarray:
        """Distance of each (N, k) row to the reference centre, in reference standard units."""
        diff = np.asarray(reduced, dtype=np.float64) - self.location
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, self.precision, diff), 0.0))


def cross_fitted_scores(
    embeddings: np.ndarray,
    n_components: int,
    seed: int,
    groups: np.ndarray | None = None,
    folds: int = 5,
) -> np.ndarray:
    """Each row's OOD score under a PCA + Mahalanobis scorer fitted on the other folds.

    These scores behave like those of new in-distribution cases (which the scorer never saw),
    so their quantiles give thresholds whose rate on unshifted data is the nominal one. With
    ``groups`` (rows of one patient share a code) a patient's rows fall in one fold: another
    image of the same patient in the fitting folds would make a row look more familiar than a
    new patient's image will.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    rng = np.random.default_rng(seed)
    codes = np.arange(len(x)) if groups is None else np.unique(groups, return_inverse=True)[1]
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    order = rng.permutation(n_groups)
    scores = np.empty(len(x))
    for held_groups in np.array_split(order, min(folds, n_groups // 3)):
        held = np.isin(codes, held_groups)
        projection = Projection.fit(x[~held], n_components, seed)
        scorer = MahalanobisScorer.fit(projection.reduce(x[~held]))
        scores[held] = scorer.score(projection.reduce(x[held]))
    return scores
