"""Metrics per subgroup of a metadata column (site, view, sex, age band, subtype, source).

Groups smaller than ``min_subgroup_size`` are reported as ``too_small`` and not computed: a
sensitivity on a handful of images is noise that reads like evidence. Missing values form their
own group, ``(missing)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from radvigil.errors import DataError
from radvigil.evaluation.bootstrap import EstimateArrays, estimate
from radvigil.evaluation.decision import selected_thresholds
from radvigil.evaluation.result import (
    DEFAULT_SUBGROUP_COLUMNS,
    Estimate,
    EvaluationOptions,
    Subgroup,
    SubgroupFinding,
)
from radvigil.evaluation.statistics import finding_statistic

MISSING = "(missing)"


def resolve_columns(frame: pd.DataFrame | None, requested: Sequence[str] | None) -> list[str]:
    """The columns to break down by: ``requested`` (all must exist) or the present defaults.

    Defaults are kept only when they split the set into at least two groups.

    Raises:
        DataError: a requested column is not in the frame, or there is no frame.
    """
    if requested is None:
        if frame is None:
            return []
        return [
            c
            for c in DEFAULT_SUBGROUP_COLUMNS
            if c in frame.columns and group_labels(frame[c]).nunique() > 1
        ]
    if requested and frame is None:
        raise DataError(f"subgroup columns {list(requested)} need a metadata frame; none given")
    if frame is None:
        return []
    for column in requested:
        if column not in frame.columns:
            raise DataError(
                f"subgroup column {column!r} does not exist; columns: {list(frame.columns)}"
            )
    return list(requested)


def group_labels(values: pd.Series) -> pd.Series:
    """Column values as strings, with empty and missing values as ``(missing)``."""
    text = values.astype("string").fillna(MISSING).str.strip()
    return text.mask(text == "", MISSING).astype(str)


def iter_groups(frame: pd.DataFrame, column: str) -> Iterator[tuple[str, np.ndarray]]:
    """(group value, boolean mask) for every value of ``column``, in sorted order."""
    labels = group_labels(frame[column]).to_numpy()
    for group in sorted(set(labels)):
        yield group, labels == group


def subgroup_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    frame: pd.DataFrame | None,
    classes: Sequence[str],
    findings: Sequence[str],
    finding_idx: np.ndarray,
    thresholds: np.ndarray,
    options: EvaluationOptions,
) -> list[Subgroup]:
    """Accuracy and per-finding sensitivity, specificity and AUC (with CIs) per subgroup."""
    out: list[Subgroup] = []
    for column in resolve_columns(frame, options.subgroup_columns):
        for group, mask in iter_groups(frame, column):
            n = int(mask.sum())
            counts = np.bincount(y[mask], minlength=len(classes))
            label_counts = {c: int(k) for c, k in zip(classes, counts, strict=True)}
            if n < options.min_subgroup_size:
                out.append(
                    Subgroup(
                        column=column,
                        group=group,
                        n=n,
                        status="too_small",
                        label_counts=label_counts,
                    )
                )
                continue
            stats = estimate(
                finding_statistic(
                    y[mask],
                    probs[mask],
                    finding_idx,
                    selected_thresholds(thresholds, mask),
                    options.n_bins,
                ),
                n,
                n_resamples=options.n_resamples,
                seed=options.seed,
                level=options.ci_level,
            )
            rows = []
            for j, name in enumerate(findings):
                positives = int(counts[finding_idx[j]])
                rows.append(
                    SubgroupFinding(
                        finding=name,
                        n_positive=positives,
                        n_negative=n - positives,
                        **{m: _at(stats[m], j) for m in ("sensitivity", "specificity", "auc")},
                    )
                )
            accuracy = stats["accuracy"]
            out.append(
                Subgroup(
                    column=column,
                    group=group,
                    n=n,
                    status="ok",
                    label_counts=label_counts,
                    accuracy=Estimate.of(
                        float(accuracy.value), float(accuracy.low), float(accuracy.high)
                    ),
                    findings=rows,
                )
            )
    return out


def _at(arrays: EstimateArrays, j: int) -> Estimate:
    return Estimate.of(arrays.value[j], arrays.low[j], arrays.high[j])
