"""Evaluation metrics: parity with scikit-learn, bootstrap behaviour, decision rules, guards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from radvigil import metrics
from radvigil.errors import ConfigError, DataError
from radvigil.evaluation import (
    EvaluationOptions,
    evaluate,
    threshold_for_sensitivity,
    threshold_for_specificity,
    youden_threshold,
)
from radvigil.evaluation.bootstrap import resample_weights
from radvigil.evaluation.decision import predict_at_thresholds
from tests.unit.evaluation_data import Predictions, chest_three_class, pneumonia_binary


@pytest.fixture(scope="module")
def binary(shared_data: Path) -> Predictions:
    return pneumonia_binary(shared_data)


@pytest.fixture(scope="module")
def three(shared_data: Path) -> Predictions:
    return chest_three_class(shared_data)


def _thresholds(data: Predictions, target: float = 0.9) -> dict[str, float]:
    return {
        f: threshold_for_sensitivity(data.y_val == f, data.p_val[:, data.classes.index(f)], target)
        for f in data.findings
    }


def _codes(data: Predictions) -> np.ndarray:
    return np.array([data.classes.index(label) for label in data.y_test])


def test_binary_numbers_match_scikit_learn(binary: Predictions) -> None:
    thresholds = _thresholds(binary)
    result = evaluate(binary.y_test, binary.p_test, binary.classes, binary.findings, thresholds)
    y, p = _codes(binary), binary.p_test[:, 1]
    flagged = (p >= thresholds["pneumonia"]).astype(int)

    finding = result.finding("pneumonia")
    assert finding.auc.value == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert finding.sensitivity.value == pytest.approx(skm.recall_score(y, flagged))
    assert finding.ppv.value == pytest.approx(skm.precision_score(y, flagged))
    assert finding.f1.value == pytest.approx(skm.f1_score(y, flagged))
    assert finding.specificity.value == pytest.approx(skm.recall_score(y, flagged, pos_label=0))
    assert [[finding.tn, finding.fp], [finding.fn, finding.tp]] == skm.confusion_matrix(
        y, flagged
    ).tolist()
    assert result.decision("thresholds").confusion == skm.confusion_matrix(y, flagged).tolist()
    argmax = binary.p_test.argmax(axis=1)
    assert result.decision("argmax").confusion == skm.confusion_matrix(y, argmax).tolist()
    assert result.decision("argmax").accuracy.value == pytest.approx(skm.accuracy_score(y, argmax))


@pytest.mark.parametrize("rule", ["argmax", "thresholds"])
def test_multiclass_numbers_match_scikit_learn(three: Predictions, rule: str) -> None:
    thresholds = _thresholds(three)
    result = evaluate(three.y_test, three.p_test, three.classes, three.findings, thresholds)
    y = _codes(three)
    if rule == "argmax":
        pred = three.p_test.argmax(axis=1)
    else:
        idx = np.array([1, 2])
        pred = predict_at_thresholds(three.p_test, idx, np.array(list(thresholds.values())))
    decision = result.decision(rule)
    assert decision.confusion == skm.confusion_matrix(y, pred).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred)
    for j, row in enumerate(decision.classes):
        assert row.support == support[j]
        assert row.sensitivity.value == pytest.approx(recall[j])
        assert row.ppv.value == pytest.approx(precision[j])
        assert row.f1.value == pytest.approx(f1[j])
    for average in ("macro", "weighted"):
        values = getattr(decision, average)
        assert values["sensitivity"].value == pytest.approx(
            skm.recall_score(y, pred, average=average)
        )
        assert values["ppv"].value == pytest.approx(skm.precision_score(y, pred, average=average))
        assert values["f1"].value == pytest.approx(skm.f1_score(y, pred, average=average))
    for average in ("macro", "weighted"):
        expected = skm.roc_auc_score(y, three.p_test, multi_class="ovr", average=average)
        assert getattr(result, f"{average}_auc").value == pytest.approx(expected)


def test_curves_match_scikit_learn(three: Predictions) -> None:
    result = evaluate(three.y_test, three.p_test, three.classes, three.findings, _thresholds(three))
    y = _codes(three)
    for j, name in enumerate(three.classes):
        positive, scores = y == j, three.p_test[:, j]
        fpr, tpr, thr = skm.roc_curve(positive, scores, drop_intermediate=False)
        roc = result.roc[j]
        assert roc.name == name
        np.testing.assert_allclose(roc.x, fpr, atol=1e-6)
        np.testing.assert_allclose(roc.y, tpr, atol=1e-6)
        np.testing.assert_allclose(roc.thresholds[1:], thr[1:])
        assert result.auc[name].value == pytest.approx(skm.roc_auc_score(positive, scores))
        assert result.pr[j].area == pytest.approx(skm.average_precision_score(positive, scores))
        prec, rec, _ = skm.precision_recall_curve(positive, scores, drop_intermediate=False)
        np.testing.assert_allclose(result.pr[j].y, prec[:-1][::-1], atol=1e-6)
        np.testing.assert_allclose(result.pr[j].x, rec[:-1][::-1], atol=1e-6)


def test_reliability_and_ece_follow_equal_width_bins(binary: Predictions) -> None:
    positive, scores = _codes(binary) == 1, binary.p_test[:, 1]
    bins = metrics.reliability_bins(positive, scores, n_bins=10)
    observed, predicted = calibration_curve(positive, scores, n_bins=10, strategy="uniform")
    filled = bins["count"] > 0
    np.testing.assert_allclose(bins["observed"][filled], observed)
    np.testing.assert_allclose(bins["mean_predicted"][filled], predicted)
    gaps = np.abs(bins["observed"] - bins["mean_predicted"])[filled]
    expected = float((bins["count"][filled] * gaps).sum() / scores.size)
    ece = metrics.expected_calibration_error(positive, scores, np.ones((1, scores.size)))
    assert ece[0] == pytest.approx(expected)


def test_weighted_metrics_equal_scikit_learn_on_each_resample(binary: Predictions) -> None:
    y, p = _codes(binary), binary.p_test[:, 1]
    weights = next(resample_weights(y.size, 5, seed=3))
    aucs = metrics.auc(y == 1, p, weights)
    confusion = metrics.confusion_counts(y, (p >= 0.5).astype(int), 2, weights)
    for b in range(5):
        assert aucs[b] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=weights[b]))
        expected = skm.confusion_matrix(y, p >= 0.5, sample_weight=weights[b])
        np.testing.assert_allclose(confusion[b], expected)


def test_bootstrap_intervals_contain_the_estimate_and_repeat_by_seed(binary: Predictions) -> None:
    args = (binary.y_test, binary.p_test, binary.classes, binary.findings, _thresholds(binary))
    first = evaluate(*args, options=EvaluationOptions(seed=7))
    again = evaluate(*args, options=EvaluationOptions(seed=7))
    other = evaluate(*args, options=EvaluationOptions(seed=8))
    assert first.to_json() == again.to_json()
    finding = first.finding("pneumonia")
    assert finding.sensitivity != other.finding("pneumonia").sensitivity
    for name in ("sensitivity", "specificity", "ppv", "npv", "f1", "auc", "ece"):
        estimate = getattr(finding, name)
        assert estimate.low <= estimate.value <= estimate.high, name
        assert estimate.high - estimate.low > 0, name


def test_threshold_rule_prefers_the_finding_furthest_past_its_threshold() -> None:
    probs = np.array(
        [
            [0.60, 0.35, 0.05],  # only pneumonia flagged
            [0.50, 0.35, 0.15],  # both flagged: 0.35/0.3 < 0.15/0.1 -> tuberculosis
            [0.80, 0.15, 0.05],  # none flagged -> normal
            [0.10, 0.45, 0.45],  # both flagged: 1.5 vs 4.5 -> tuberculosis
        ]
    )
    pred = predict_at_thresholds(probs, np.array([1, 2]), np.array([0.3, 0.1]))
    assert pred.tolist() == [1, 2, 0, 2]


def test_threshold_pickers_are_extreme_and_reach_their_targets(binary: Predictions) -> None:
    positive, scores = binary.y_val == "pneumonia", binary.p_val[:, 1]
    t = threshold_for_sensitivity(positive, scores, 0.95)
    assert (scores[positive] >= t).mean() >= 0.95
    assert (scores[positive] >= np.nextafter(t, 1)).mean() < 0.95
    s = threshold_for_specificity(positive, scores, 0.95)
    assert (scores[~positive] < s).mean() >= 0.95
    next_lower = scores[scores < s].max()  # thresholds are observed scores
    assert (scores[~positive] < next_lower).mean() < 0.95
    j = youden_threshold(positive, scores)
    candidates = np.unique(scores)
    youden = [(scores[positive] >= c).mean() - (scores[~positive] >= c).mean() for c in candidates]
    assert (scores[positive] >= j).mean() - (scores[~positive] >= j).mean() == pytest.approx(
        max(youden)
    )
    with pytest.raises(DataError, match="with and without the finding"):
        threshold_for_sensitivity(np.zeros(5, bool), np.linspace(0, 1, 5), 0.9)
    with pytest.raises(ConfigError, match="in \\(0, 1\\]"):
        threshold_for_sensitivity(positive, scores, 1.5)


def test_operating_points_are_chosen_on_validation_and_checked_on_test(
    binary: Predictions,
) -> None:
    options = EvaluationOptions(sensitivity_targets={"pneumonia": 0.97}, specificity_target=0.9)
    result = evaluate(
        binary.y_test,
        binary.p_test,
        binary.classes,
        binary.findings,
        _thresholds(binary),
        validation=(binary.y_val, binary.p_val),
        options=options,
    )
    points = {p.mode: p for p in result.operating_points}
    assert set(points) == {"screening", "balanced", "high_specificity"}
    assert points["screening"].target == 0.97
    assert points["screening"].validation_sensitivity >= 0.97
    assert points["high_specificity"].validation_specificity >= 0.9
    test_flags = binary.p_test[:, 1] >= points["screening"].threshold
    expected = test_flags[binary.y_test == "pneumonia"].mean()
    assert points["screening"].test_sensitivity.value == pytest.approx(expected)


def test_subgroups_guard_small_groups_and_match_the_whole_set_metrics(
    three: Predictions,
) -> None:
    frame = three.frame.copy()
    frame["site"] = np.where(np.arange(len(frame)) < 20, "small-clinic", "main-hospital")
    options = EvaluationOptions(subgroup_columns=["site", "source_dataset"])
    thresholds = _thresholds(three)
    result = evaluate(
        three.y_test,
        three.p_test,
        three.classes,
        three.findings,
        thresholds,
        frame,
        options=options,
    )
    groups = {(g.column, g.group): g for g in result.subgroups}
    small = groups[("site", "small-clinic")]
    assert small.status == "too_small" and small.n == 20 and small.findings == []
    kermany = groups[("source_dataset", "kermany_guangzhou_pediatric_cxr")]
    mask = (frame["source_dataset"] == "kermany_guangzhou_pediatric_cxr").to_numpy()
    alone = evaluate(
        three.y_test[mask], three.p_test[mask], three.classes, three.findings, thresholds
    )
    pneumonia = next(f for f in kermany.findings if f.finding == "pneumonia")
    expected = alone.finding("pneumonia").sensitivity.value
    assert pneumonia.sensitivity.value == pytest.approx(expected)
    tb = next(f for f in kermany.findings if f.finding == "tuberculosis")
    assert tb.n_positive == 0 and tb.sensitivity.value is None


def test_confounded_sources_produce_a_caveat(three: Predictions) -> None:
    result = evaluate(
        three.y_test, three.p_test, three.classes, three.findings, _thresholds(three), three.frame
    )
    assert any("confounded in 'source_dataset'" in c for c in result.caveats)


def test_bad_inputs_are_refused_with_the_reason(binary: Predictions) -> None:
    args = (binary.p_test, binary.classes, binary.findings, {"pneumonia": 0.5})
    labels = binary.y_test.copy().astype(object)
    labels[3] = "tuberculosis"
    with pytest.raises(DataError, match=r"labels \['tuberculosis'\] are not among"):
        evaluate(labels, *args)
    with pytest.raises(DataError, match="empty"):
        evaluate(np.array([], dtype=str), np.zeros((0, 2)), *args[1:])
    frame = pd.DataFrame({"view_position": ["AP"] * len(binary.y_test)})
    with pytest.raises(DataError, match="subgroup column 'site' does not exist"):
        evaluate(binary.y_test, *args, frame, options=EvaluationOptions(subgroup_columns=["site"]))
    with pytest.raises(DataError, match="shape"):
        evaluate(binary.y_test, binary.p_test[:, :1], *args[1:])
    with pytest.raises(ConfigError, match="no operating threshold for finding"):
        evaluate(binary.y_test, binary.p_test, binary.classes, binary.findings, {})


def test_the_monitors_auc_is_an_adapter_over_the_one_definition():
    from radvigil.monitoring.stattests import auc, bootstrap_auc_interval

    rng = np.random.default_rng(3)
    positive = rng.random(120) < 0.4
    scores = np.round(rng.random(120) + 0.3 * positive, 1)  # rounded: many ties
    assert auc(positive, scores) == pytest.approx(skm.roc_auc_score(positive, scores), abs=1e-12)
    assert np.isnan(auc(np.zeros(5, bool), scores[:5]))
    low, high = bootstrap_auc_interval(positive, scores, 300, 0.9, np.random.default_rng(0))
    draws = np.random.default_rng(0).integers(0, 120, size=(300, 120))
    by_index = [skm.roc_auc_score(positive[d], scores[d]) for d in draws]
    assert (low, high) == pytest.approx(tuple(np.quantile(by_index, [0.05, 0.95])), abs=1e-12)
