"""The evaluation entry point: one model's probabilities on one labelled set -> a result.

Knows nothing of files, models or tracking: the caller (CLI, training, the retraining loop)
runs inference and passes arrays; :func:`evaluate` returns an :class:`EvaluationResult`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radvigil import metrics
from radvigil.errors import DataError
from radvigil.evaluation.bootstrap import EstimateArrays, estimate
from radvigil.evaluation.caveats import confounding_caveats
from radvigil.evaluation.decision import (
    check_probabilities,
    encode_labels,
    finding_indices,
    flag_findings,
    predict_argmax,
    predict_at_thresholds,
    row_thresholds,
    site_column,
    threshold_vector,
)
from radvigil.evaluation.result import (
    Calibration,
    ClassMetrics,
    Curve,
    DecisionMetrics,
    ErrorCase,
    Estimate,
    EvaluationOptions,
    EvaluationResult,
    FindingMetrics,
    finite,
    finite_list,
)
from radvigil.evaluation.statistics import RATES, class_statistic, finding_statistic
from radvigil.evaluation.subgroups import subgroup_metrics
from radvigil.evaluation.thresholds import operating_points

Labels = Sequence[str] | np.ndarray


def evaluate(
    y_true: Labels,
    probs: np.ndarray,
    classes: Sequence[str],
    findings: Sequence[str],
    thresholds: Mapping[str, float],
    frame: pd.DataFrame | None = None,
    *,
    paths: Sequence[str | Path] | None = None,
    validation: tuple[Labels, np.ndarray] | None = None,
    options: EvaluationOptions | None = None,
    context: Mapping[str, str] | None = None,
    site_thresholds: Mapping[str, Mapping[str, float]] | None = None,
) -> EvaluationResult:
    """Clinical metrics with bootstrap CIs, curves, calibration, subgroups and operating points.

    Args:
        y_true: true class names (or indices into ``classes``), one per item.
        probs: (items, classes) probabilities in ``classes`` order.
        classes: the task's class names.
        findings: the classes that are findings (flagged at their threshold).
        thresholds: the model's operating threshold per finding.
        frame: metadata rows aligned with ``y_true`` (for subgroups and caveats).
        paths: image path per item, listed with the most confident errors for thumbnails.
        validation: (labels, probs) of a validation set: operating points are chosen there and
            checked on this set; without it no operating points are computed.
        options: bootstrap size, seed, bins, subgroup columns and targets.
        context: provenance strings shown in the report (model, dataset, split).
        site_thresholds: per site, thresholds fitted on its own cases; an item whose ``frame``
            row names a listed site is flagged at its site's (the report lists them).

    Raises:
        DataError: the set is empty, has unknown labels, misaligned inputs or an unknown
            subgroup column.
        ConfigError: a finding lacks a threshold.
    """
    options = options or EvaluationOptions()
    y = encode_labels(y_true, classes)
    p = check_probabilities(probs, y.size, classes)
    f_idx = finding_indices(classes, findings)
    cuts = threshold_vector(thresholds, findings)
    _check_aligned(y.size, frame, paths)
    per_item = row_thresholds(thresholds, findings, site_column(frame), site_thresholds)
    predictions = {
        "argmax": predict_argmax(p),
        "thresholds": predict_at_thresholds(p, f_idx, per_item),
    }
    by_class = class_statistic(y, p, predictions, options.n_bins)
    by_finding = finding_statistic(y, p, f_idx, per_item, options.n_bins)
    stats = estimate(
        lambda w: {**by_class(w), **{f"finding.{k}": v for k, v in by_finding(w).items()}},
        y.size,
        n_resamples=options.n_resamples,
        seed=options.seed,
        level=options.ci_level,
    )
    names = list(classes)
    label_counts = np.bincount(y, minlength=len(names))
    points = []
    if validation is not None:
        y_val = encode_labels(validation[0], classes)
        p_val = check_probabilities(validation[1], y_val.size, classes)
        points = operating_points((y_val, p_val), (y, p), findings, f_idx, options)
    return EvaluationResult(
        classes=names,
        findings=list(findings),
        n_items=int(y.size),
        label_counts={c: int(n) for c, n in zip(names, label_counts, strict=True)},
        thresholds={f: float(t) for f, t in zip(findings, cuts, strict=True)},
        options=options,
        context=dict(context or {}),
        site_thresholds=_used_site_thresholds(frame, site_thresholds),
        finding_metrics=_finding_metrics(y, p, findings, f_idx, cuts, per_item, stats),
        decisions=[_decision(rule, y, pred, names, stats) for rule, pred in predictions.items()],
        auc={c: _at(stats["auc"], j) for j, c in enumerate(names)},
        macro_auc=_at(stats["macro.auc"]),
        weighted_auc=_at(stats["weighted.auc"]),
        roc=[_roc(y == j, p[:, j], c) for j, c in enumerate(names)],
        pr=[_pr(y == j, p[:, j], c) for j, c in enumerate(names)],
        calibration=[
            _calibration(y == j, p[:, j], c, _at(stats["ece"], j), options.n_bins)
            for j, c in enumerate(names)
        ],
        macro_ece=_at(stats["macro.ece"]),
        subgroups=subgroup_metrics(y, p, frame, names, findings, f_idx, per_item, options),
        operating_points=points,
        worst_errors=_worst_errors(y, p, predictions["thresholds"], names, paths, options),
        caveats=confounding_caveats(frame, [names[i] for i in y]),
    )


def _used_site_thresholds(
    frame: pd.DataFrame | None, site_thresholds: Mapping[str, Mapping[str, float]] | None
) -> dict[str, dict[str, float]]:
    """The site thresholds that applied to some item (what the report must say it used)."""
    sites = set(site_column(frame) or [])
    return {s: dict(t) for s, t in (site_thresholds or {}).items() if s in sites}


def _check_aligned(
    n_items: int, frame: pd.DataFrame | None, paths: Sequence[str | Path] | None
) -> None:
    if frame is not None and len(frame) != n_items:
        raise DataError(f"metadata frame has {len(frame)} rows for {n_items} labels")
    if paths is not None and len(paths) != n_items:
        raise DataError(f"{len(paths)} image paths given for {n_items} labels")


def _at(arrays: EstimateArrays, *index: int) -> Estimate:
    return Estimate.of(arrays.value[index], arrays.low[index], arrays.high[index])


def _decision(
    rule: str, y: np.ndarray, pred: np.ndarray, classes: list[str], stats: dict[str, EstimateArrays]
) -> DecisionMetrics:
    confusion = metrics.confusion_counts(y, pred, len(classes), np.ones((1, y.size)))[0]
    support = confusion.sum(axis=1)
    return DecisionMetrics(
        rule=rule,
        accuracy=_at(stats[f"{rule}.accuracy"]),
        classes=[
            ClassMetrics(
                name=c,
                support=int(support[j]),
                **{m: _at(stats[f"{rule}.{m}"], j) for m in RATES},
            )
            for j, c in enumerate(classes)
        ],
        macro={m: _at(stats[f"{rule}.macro.{m}"]) for m in RATES},
        weighted={m: _at(stats[f"{rule}.weighted.{m}"]) for m in RATES},
        confusion=confusion.astype(int).tolist(),
    )


def _finding_metrics(
    y: np.ndarray,
    p: np.ndarray,
    findings: Sequence[str],
    f_idx: np.ndarray,
    cuts: np.ndarray,
    per_item: np.ndarray,
    stats: dict,
) -> list[FindingMetrics]:
    positive = y[:, None] == f_idx[None, :]
    cells = metrics.flag_counts(positive, flag_findings(p, f_idx, per_item), np.ones((1, y.size)))
    tp, fn, fp, tn = (c[0].astype(int) for c in cells)
    return [
        FindingMetrics(
            finding=name,
            threshold=float(cuts[j]),
            tp=int(tp[j]),
            fn=int(fn[j]),
            fp=int(fp[j]),
            tn=int(tn[j]),
            **{m: _at(stats[f"finding.{m}"], j) for m in (*RATES, "auc", "ece")},
        )
        for j, name in enumerate(findings)
    ]


def _roc(positive: np.ndarray, scores: np.ndarray, name: str) -> Curve:
    curve = metrics.roc_points(positive, scores)
    area = metrics.auc(positive, scores, np.ones((1, scores.size)))[0]
    return Curve(
        name=name,
        x=finite_list(curve["fpr"]),
        y=finite_list(curve["tpr"]),
        thresholds=[float(t) for t in curve["thresholds"]],
        area=finite(area),
    )


def _pr(positive: np.ndarray, scores: np.ndarray, name: str) -> Curve:
    curve = metrics.pr_points(positive, scores)
    return Curve(
        name=name,
        x=finite_list(curve["recall"]),
        y=finite_list(curve["precision"]),
        thresholds=[float(t) for t in curve["thresholds"]],
        area=finite(float(curve["average_precision"])),
    )


def _calibration(
    positive: np.ndarray, scores: np.ndarray, name: str, ece: Estimate, n_bins: int
) -> Calibration:
    bins = metrics.reliability_bins(positive, scores, n_bins)
    return Calibration(
        name=name,
        edges=finite_list(bins["edges"]),
        count=[int(c) for c in bins["count"]],
        mean_predicted=finite_list(bins["mean_predicted"]),
        observed=finite_list(bins["observed"]),
        ece=ece,
    )


def _worst_errors(
    y: np.ndarray,
    p: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    paths: Sequence[str | Path] | None,
    options: EvaluationOptions,
) -> list[ErrorCase]:
    rows = np.arange(y.size)
    wrong = np.flatnonzero(pred != y)
    confidence = p[rows, pred]
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")][: options.n_worst_errors]
    return [
        ErrorCase(
            index=int(i),
            path=str(paths[i]) if paths is not None else None,
            true_label=classes[y[i]],
            predicted=classes[pred[i]],
            confidence=float(confidence[i]),
            true_probability=float(p[i, y[i]]),
        )
        for i in ranked
    ]
