"""Decision rules: how class probabilities become finding flags and one predicted class.

Two rules are used everywhere in radvigil, so the report, the gates and the service agree:

* ``argmax``: the predicted class is the one with the highest probability.
* ``thresholds``: every finding has an operating threshold. A finding is *flagged* when its
  probability is >= its threshold (flags are what screening sensitivity is measured on). The one
  predicted class is the flagged finding with the largest probability/threshold ratio, i.e. the
  finding furthest past its own threshold; when no finding is flagged it is the non-finding class
  with the highest probability (or, if every class is a finding, the largest-ratio finding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from radvigil.errors import ConfigError, DataError

_TINY = 1e-12  # keeps the ratio finite for a threshold of exactly 0
_PROB_TOLERANCE = 1e-6


def encode_labels(y_true: Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class indices for labels given as class names (or as integer indices into ``classes``).

    Raises:
        DataError: the set is empty or holds labels the task does not know.
    """
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise DataError(f"labels must be one-dimensional, got shape {labels.shape}")
    if labels.size == 0:
        raise DataError("the evaluation set is empty: there is nothing to evaluate")
    if np.issubdtype(labels.dtype, np.integer):
        bad = sorted({int(v) for v in labels[(labels < 0) | (labels >= len(classes))]})
        if bad:
            raise DataError(
                f"label indices {bad[:10]} are outside 0..{len(classes) - 1} "
                f"for the task's classes {list(classes)}"
            )
        return labels.astype(np.intp)
    names, inverse = np.unique(labels.astype(str), return_inverse=True)
    unknown = [str(n) for n in names if n not in classes]
    if unknown:
        raise DataError(f"labels {unknown[:10]} are not among the task's classes {list(classes)}")
    lookup = np.array([list(classes).index(str(n)) for n in names], dtype=np.intp)
    return lookup[inverse]


def check_probabilities(probs: np.ndarray, n_items: int, classes: Sequence[str]) -> np.ndarray:
    """``probs`` as a float array of shape (items, classes) with values in [0, 1].

    Raises:
        DataError: wrong shape, non-finite values or values outside [0, 1].
    """
    array = np.asarray(probs, dtype=np.float64)
    if array.shape != (n_items, len(classes)):
        raise DataError(
            f"probabilities have shape {array.shape}; expected ({n_items}, {len(classes)}) "
            f"for {n_items} labels and classes {list(classes)}"
        )
    if not np.isfinite(array).all():
        raise DataError("probabilities contain NaN or infinite values")
    if array.min() < -_PROB_TOLERANCE or array.max() > 1 + _PROB_TOLERANCE:
        raise DataError(
            f"probabilities must lie in [0, 1]; got [{array.min():.4g}, {array.max():.4g}]"
        )
    return np.clip(array, 0.0, 1.0)


def finding_indices(classes: Sequence[str], findings: Sequence[str]) -> np.ndarray:
    """Column index of each finding among ``classes``."""
    unknown = [f for f in findings if f not in classes]
    if unknown or not findings:
        raise ConfigError(f"findings {unknown or '[]'} must be a non-empty subset of {classes}")
    return np.array([list(classes).index(f) for f in findings], dtype=np.intp)


def threshold_vector(thresholds: Mapping[str, float], findings: Sequence[str]) -> np.ndarray:
    """The operating threshold of each finding, in ``findings`` order.

    Raises:
        ConfigError: a finding has no threshold or a threshold lies outside [0, 1].
    """
    missing = [f for f in findings if f not in thresholds]
    if missing:
        raise ConfigError(
            f"no operating threshold for finding(s) {missing}; thresholds given for "
            f"{sorted(thresholds)}"
        )
    vector = np.array([float(thresholds[f]) for f in findings])
    if ((vector < 0) | (vector > 1)).any():
        raise ConfigError(f"operating thresholds must lie in [0, 1]; got {dict(thresholds)}")
    return vector


def row_thresholds(
    thresholds: Mapping[str, float],
    findings: Sequence[str],
    sites: Sequence[object] | None = None,
    site_thresholds: Mapping[str, Mapping[str, float]] | None = None,
) -> np.ndarray:
    """Each item's operating threshold per finding: the (findings,) vector when no item's site
    has thresholds of its own, else (items, findings), where an item from a site listed in
    ``site_thresholds`` takes that site's (the flag rules broadcast either shape).

    Raises:
        ConfigError: as :func:`threshold_vector`, for the version's or a site's thresholds.
    """
    base = threshold_vector(thresholds, findings)
    if not site_thresholds or sites is None:
        return base
    names = np.asarray(["" if s is None else str(s) for s in sites], dtype=object)
    listed = [s for s in site_thresholds if (names == s).any()]
    if not listed:
        return base
    out = np.tile(base, (names.size, 1))
    for site in listed:
        out[names == site] = threshold_vector({**thresholds, **site_thresholds[site]}, findings)
    return out


def selected_thresholds(thresholds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The thresholds of the items ``mask`` selects (a per-item array is cut, a vector kept)."""
    return thresholds[mask] if thresholds.ndim == 2 else thresholds


def site_column(frame: pd.DataFrame | None) -> list[object] | None:
    """Each row's ``site`` (None for a frame without one), for :func:`row_thresholds`."""
    if frame is None or "site" not in frame:
        return None
    return [None if pd.isna(s) or s == "" else str(s) for s in frame["site"]]


def predict_argmax(probs: np.ndarray) -> np.ndarray:
    """The class with the highest probability (first on ties)."""
    return np.argmax(probs, axis=1)


def flag_findings(probs: np.ndarray, finding_idx: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean (items, findings): each finding's probability is >= its threshold."""
    return probs[:, finding_idx] >= thresholds


def predict_at_thresholds(
    probs: np.ndarray, finding_idx: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """One predicted class per item under the ``thresholds`` rule described in the module."""
    ratio = probs[:, finding_idx] / np.maximum(thresholds, _TINY)
    flagged = flag_findings(probs, finding_idx, thresholds)
    best_flagged = finding_idx[np.argmax(np.where(flagged, ratio, -np.inf), axis=1)]
    others = np.setdiff1d(np.arange(probs.shape[1]), finding_idx)
    if others.size:
        fallback = others[np.argmax(probs[:, others], axis=1)]
    else:
        fallback = finding_idx[np.argmax(ratio, axis=1)]
    return np.where(flagged.any(axis=1), best_flagged, fallback)
