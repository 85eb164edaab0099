"""Acceptance gates: criteria files, evidence rows, paired comparisons, subgroups, problem cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvigil.errors import ConfigError, DataError
from radvigil.evaluation import (
    GATES,
    EvaluationInputs,
    criteria_from_dict,
    evaluate,
    load_criteria,
    run_gates,
    threshold_for_sensitivity,
    verdict_table_rows,
)
from tests.unit.evaluation_data import Predictions, chest_three_class, pneumonia_binary

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binary(shared_data: Path) -> Predictions:
    return pneumonia_binary(shared_data)


@pytest.fixture(scope="module")
def three(shared_data: Path) -> Predictions:
    return chest_three_class(shared_data)


def _inputs(data: Predictions, threshold: float | None = None, **extra) -> EvaluationInputs:
    if threshold is None:
        col = data.classes.index("pneumonia")
        threshold = threshold_for_sensitivity(data.y_val == "pneumonia", data.p_val[:, col], 0.95)
    thresholds = dict.fromkeys(data.findings, threshold)
    return EvaluationInputs(data.y_test, data.p_test, thresholds, data.frame, **extra)


def _gates(*gates: dict, **top) -> object:
    return criteria_from_dict({"n_resamples": 500, **top, "gates": list(gates)})


def _run(criteria, data: Predictions, candidate, champion=None, problems=None):
    return run_gates(
        criteria, candidate, champion, problems, classes=data.classes, findings=data.findings
    )


def test_specificity_floor_fails_a_model_at_a_very_low_threshold(binary: Predictions) -> None:
    shipped = load_criteria(REPO / "configs" / "gates.yaml")
    floor = next(g for g in shipped.gates if g.kind == "min_specificity")
    assert floor.bound("pneumonia") == 0.50
    criteria = shipped.model_copy(update={"gates": [floor], "n_resamples": 200})
    verdict = _run(criteria, binary, _inputs(binary, threshold=0.001))
    assert not verdict.passed
    (row,) = verdict.rows
    assert row.value is not None and row.value < 0.5
    assert "the model flags" in row.message and "patients without pneumonia" in row.message
    assert "this gate allows at most 50%" in row.message
    assert _run(criteria, binary, _inputs(binary, threshold=0.5)).passed


def test_shipped_criteria_load_and_name_registered_kinds() -> None:
    criteria = load_criteria(REPO / "configs" / "gates.yaml")
    kinds = {gate.kind for gate in criteria.gates}
    assert kinds <= set(GATES)
    assert {"min_sensitivity", "non_inferiority", "problem_cases", "subgroup_floor"} <= kinds
    floor = next(g for g in criteria.gates if g.kind == "min_sensitivity")
    assert floor.bound("pneumonia") == 0.98 and floor.bound("fracture") == 0.99


def test_bad_criteria_are_refused_with_the_valid_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown gate kind 'min_vibes'; valid kinds: \[.*"):
        _gates({"kind": "min_vibes"})
    with pytest.raises(ConfigError, match=r"gate #1 \(min_sensitivity\).*defualt: Extra inputs"):
        _gates({"kind": "min_sensitivity", "defualt": 0.9})
    broken = tmp_path / "gates.yaml"
    broken.write_text("gates: [kind: {")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_criteria(broken)
    with pytest.raises(ConfigError, match="cannot read gate criteria"):
        load_criteria(tmp_path / "missing.yaml")


def test_missing_the_sensitivity_floor_fails_and_names_the_evidence(binary: Predictions) -> None:
    candidate = _inputs(binary, threshold=0.5)
    verdict = _run(_gates({"kind": "min_sensitivity", "default": 0.98}), binary, candidate)
    assert not verdict.passed
    (row,) = verdict.failures
    evaluated = evaluate(
        binary.y_test, binary.p_test, binary.classes, binary.findings, {"pneumonia": 0.5}
    ).finding("pneumonia")
    assert row.finding == "pneumonia" and row.metric == "sensitivity"
    assert row.value == pytest.approx(evaluated.sensitivity.value)
    assert row.ci_low < row.value < row.ci_high
    assert row.threshold == 0.98 and row.comparator == ">=" and row.judged == "point"
    assert "sensitivity for pneumonia" in row.message and "0.980" in row.message
    assert "FAILED" in row.message
    table = verdict_table_rows(verdict)
    assert table[0]["result"] == "FAIL" and table[0]["rule"] == "point >= 0.980"
    assert verdict.summary().startswith("FAIL: 1 of 1 checks failed")


def test_judging_on_the_ci_bound_is_stricter_than_on_the_point(binary: Predictions) -> None:
    candidate = _inputs(binary, threshold=0.5)
    point = _run(_gates({"kind": "min_sensitivity", "default": 0.0}), binary, candidate)
    value = point.rows[0].value
    floor = {"kind": "min_sensitivity", "default": round(value - 0.005, 4)}
    assert _run(_gates(floor), binary, candidate).passed
    strict = _run(_gates(floor, judge_on="ci_bound"), binary, candidate)
    assert not strict.passed and strict.rows[0].judged == "ci_lower"
    ceiling = {"kind": "max_ece", "default": 1.0, "judge_on": "ci_bound"}
    ece = _run(_gates(ceiling), binary, candidate)
    assert ece.passed and ece.rows[0].judged == "ci_upper"


def test_a_copy_of_the_champion_is_non_inferior_to_itself(binary: Predictions) -> None:
    champion = _inputs(binary)
    criteria = _gates({"kind": "non_inferiority", "metrics": ["sensitivity", "auc"]})
    verdict = _run(criteria, binary, _inputs(binary), champion)
    assert verdict.passed and len(verdict.rows) == 2
    for row in verdict.rows:
        assert row.value == 0.0 and row.ci_low == 0.0 and row.comparator == ">"


def test_a_less_sensitive_candidate_is_inferior(binary: Predictions) -> None:
    champion = _inputs(binary)
    stricter = _inputs(binary, threshold=0.7)
    criteria = _gates({"kind": "non_inferiority", "metrics": ["sensitivity", "auc"]})
    verdict = _run(criteria, binary, stricter, champion)
    rows = {row.metric: row for row in verdict.rows}
    assert rows["sensitivity"].status == "fail" and rows["sensitivity"].ci_high < 0
    assert rows["auc"].status == "pass"  # same probabilities, only the threshold moved


def test_non_inferiority_without_champion_is_skipped_not_failed(binary: Predictions) -> None:
    verdict = _run(_gates({"kind": "non_inferiority"}), binary, _inputs(binary))
    assert verdict.passed
    assert {row.status for row in verdict.rows} == {"skipped"}
    assert "no champion" in verdict.rows[0].message


def test_paired_gates_refuse_different_items(binary: Predictions) -> None:
    champion = EvaluationInputs(binary.y_test[:-1], binary.p_test[:-1], {"pneumonia": 0.5})
    with pytest.raises(DataError, match="same items"):
        _run(_gates({"kind": "non_inferiority"}), binary, _inputs(binary), champion)
    ids = [str(i) for i in range(len(binary.y_test))]
    with pytest.raises(DataError, match="same items"):
        _run(
            _gates({"kind": "non_inferiority"}),
            binary,
            _inputs(binary, item_ids=ids),
            _inputs(binary, item_ids=ids[::-1]),
        )


def test_subgroup_floor_judges_large_groups_and_skips_the_rest(three: Predictions) -> None:
    gate = {"kind": "subgroup_floor", "column": "source_dataset", "min": 0.5, "min_size": 150}
    verdict = _run(_gates(gate), three, _inputs(three))
    by_place = {(row.subgroup, row.finding): row for row in verdict.rows}
    kermany = "source_dataset=kermany_guangzhou_pediatric_cxr"
    assert by_place[(kermany, "pneumonia")].status in {"pass", "fail"}
    assert "in " + kermany in by_place[(kermany, "pneumonia")].message
    no_tb = by_place[(kermany, "tuberculosis")]
    assert no_tb.status == "skipped" and "only 0 cases" in no_tb.message
    sakha = by_place[("source_dataset=sakha_tb_datacamp_subset", None)]
    assert sakha.status == "skipped" and "too small (n=100 < 150)" in sakha.message


def test_subgroup_floor_fails_a_group_below_it(three: Predictions) -> None:
    gate = {"kind": "subgroup_floor", "column": "source_dataset", "min": 0.999}
    verdict = _run(_gates(gate), three, _inputs(three, threshold=0.6))
    failed = {(row.subgroup, row.finding) for row in verdict.failures}
    assert ("source_dataset=kermany_guangzhou_pediatric_cxr", "pneumonia") in failed


def test_subgroup_floor_on_a_missing_column_names_it(three: Predictions) -> None:
    gate = {"kind": "subgroup_floor", "column": "scanner_model", "min": 0.9}
    with pytest.raises(DataError, match="subgroup column 'scanner_model' does not exist"):
        _run(_gates(gate), three, _inputs(three))


def test_problem_cases_catch_a_regression(binary: Predictions) -> None:
    # Problem cases: pneumonia images the champion finds only with moderate confidence.
    p = binary.p_test[:, 1]
    hard = np.flatnonzero((binary.y_test == "pneumonia") & (p >= 0.5) & (p < 0.9))
    subset = Predictions(
        binary.classes,
        binary.findings,
        binary.y_val,
        binary.p_val,
        binary.y_test[hard],
        binary.p_test[hard],
    )
    champion = _inputs(subset, threshold=0.5)
    gate = {"kind": "problem_cases", "metric": "accuracy", "margin": 0.02, "min_accuracy": 0.5}
    same = _run(_gates(gate), binary, _inputs(binary), _inputs(binary), (champion, champion))
    assert same.passed and [row.metric for row in same.rows] == ["accuracy", "accuracy"]
    worse = _inputs(subset, threshold=0.9)
    verdict = _run(_gates(gate), binary, _inputs(binary), None, (worse, champion))
    regression = verdict.rows[-1]
    assert regression.status == "fail" and regression.value < -0.02
    assert regression.message.startswith("candidate - champion accuracy")
    alone = _run(_gates(gate), binary, _inputs(binary), None, (worse, None))
    assert [row.status for row in alone.rows][-1] == "skipped"
    missing = _run(_gates(gate), binary, _inputs(binary))
    assert missing.rows[0].status == "skipped" and "no problem-case set" in missing.rows[0].message


def test_a_margin_the_hold_out_cannot_resolve_is_marked_not_judgeable(binary: Predictions) -> None:
    champion = _inputs(binary)
    noisy = np.clip(
        binary.p_test + np.random.default_rng(0).normal(0, 0.05, binary.p_test.shape), 0, 1
    )
    candidate = EvaluationInputs(binary.y_test, noisy, champion.thresholds, binary.frame)
    probe = _run(
        _gates(
            {"kind": "non_inferiority", "metrics": ["auc"], "margin": 1e-9}, not_judgeable="fail"
        ),
        binary,
        candidate,
        champion,
    )
    (row,) = probe.rows
    half = row.value - row.ci_low
    assert half > abs(row.value), "the noisy copy must sit inside its own interval"
    margin = (abs(row.value) + half) / 2  # within the margin on the point, not on the interval
    gate = {"kind": "non_inferiority", "metrics": ["auc"], "margin": margin}

    marked = _run(_gates(gate), binary, candidate, champion)
    (row,) = marked.rows
    assert marked.passed and row.status == "skipped"
    assert f"not judgeable on {len(binary.y_test)} cases" in row.message
    assert "1 not judgeable on this hold-out" in marked.summary()
    strict = _run(_gates(gate, not_judgeable="fail"), binary, candidate, champion)
    assert not strict.passed and strict.rows[0].status == "fail"
    clearly_worse = _gates({**gate, "margin": abs(row.value) / 2 if row.value < 0 else 1e-9})
    if row.value < 0:  # a point estimate beyond the margin is a plain failure, never "too few"
        assert _run(clearly_worse, binary, candidate, champion).rows[0].status == "fail"


def test_problem_case_floors_judge_sensitivity_and_specificity(binary: Predictions) -> None:
    gate = {"kind": "problem_cases", "floors": {"sensitivity": 0.95, "specificity": 0.5}}
    low = _inputs(binary, threshold=0.001)  # flags nearly everyone: every finding, few healthy
    verdict = _run(_gates(gate), binary, _inputs(binary), None, (low, None))
    rows = {row.metric: row for row in verdict.rows if row.status != "skipped"}
    assert rows["sensitivity"].status == "pass" and rows["sensitivity"].finding == "pneumonia"
    assert rows["specificity"].status == "fail" and rows["specificity"].value < 0.5
    assert not verdict.passed
    few = np.flatnonzero(binary.y_test == "pneumonia")[:5].tolist()
    few += np.flatnonzero(binary.y_test == "normal")[:40].tolist()
    tiny = EvaluationInputs(binary.y_test[few], binary.p_test[few], low.thresholds)
    skipped = _run(_gates(gate), binary, _inputs(binary), None, (tiny, None))
    sens = next(r for r in skipped.rows if r.metric == "sensitivity")
    assert sens.status == "skipped" and "only 5 problem cases to judge sensitivity" in sens.message
    with pytest.raises(ConfigError, match="floors must be in"):
        _gates({"kind": "problem_cases", "floors": {"specificity": 1.5}})


def test_every_judged_row_says_its_room_and_the_tightest_is_named(binary: Predictions) -> None:
    criteria = _gates(
        {"kind": "min_sensitivity", "default": 0.90},
        {"kind": "max_ece", "default": 0.30},
        {"kind": "non_inferiority", "metrics": ["auc"], "margin": 0.05},
    )
    verdict = _run(criteria, binary, _inputs(binary), champion=_inputs(binary))
    by_gate = {row.gate: row for row in verdict.rows}
    sens, ece, ni = by_gate["min_sensitivity"], by_gate["max_ece"], by_gate["non_inferiority"]
    assert sens.margin == pytest.approx(sens.value - 0.90)
    assert ece.margin == pytest.approx(0.30 - ece.value)  # a ceiling: room below it
    assert ni.judged == "ci_lower" and ni.margin == pytest.approx(ni.ci_low + 0.05)
    assert verdict.tightest() is min((sens, ece, ni), key=lambda r: r.margin)
    rows = verdict_table_rows(verdict)
    assert [r["room"] for r in rows] == [f"{r.margin:.3f}" for r in verdict.rows]
    failing = _run(_gates({"kind": "min_sensitivity", "default": 1.0}), binary, _inputs(binary))
    if not failing.passed:  # a failed row's room is negative: how far it missed
        assert failing.tightest().margin < 0
