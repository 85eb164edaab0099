"""What a site's labels show: rates on every label apart from the audit estimate, the site's
learning curve, and the benchmark's curve read from its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radvigil.errors import DataError
from radvigil.monitoring.label_selection import AUDIT, LabelledCase, audit_performance
from radvigil.monitoring.onboarding_curve import bench_curve, measured_performance, site_curve


def _cases() -> list[LabelledCase]:
    # 8 policy labels on hard normals (all flagged), then 4 audit labels: 3 normals kept, 1 hit.
    hard = [LabelledCase(positive=False, flagged=True, policy="uncertainty") for _ in range(8)]
    audit = [
        LabelledCase(positive=False, flagged=False, policy=AUDIT),
        LabelledCase(positive=False, flagged=False, policy=AUDIT),
        LabelledCase(positive=False, flagged=False, policy=AUDIT),
        LabelledCase(positive=True, flagged=True, policy=AUDIT),
    ]
    return hard + audit


def test_measured_rates_count_every_label_and_differ_from_the_audit_estimate() -> None:
    sensitivity, specificity = measured_performance(_cases())
    assert (specificity.value, specificity.n) == (3 / 11, 11)
    assert (sensitivity.value, sensitivity.n) == (1.0, 1)
    assert specificity.low is not None and specificity.high is not None
    assert specificity.low < specificity.value < specificity.high
    _, audit_specificity = audit_performance(_cases())
    assert (audit_specificity.value, audit_specificity.n) == (1.0, 3)


def test_measured_rates_without_labels_are_empty() -> None:
    sensitivity, specificity = measured_performance([])
    assert sensitivity.value is None and specificity.n == 0


def test_site_curve_follows_the_labels_in_order() -> None:
    curve = site_curve(_cases(), points=4)
    assert [p.labels for p in curve] == [3, 6, 9, 12]
    # No audit label among the first 8: no estimate yet; then the audit normals arrive.
    assert [p.specificity.n for p in curve] == [0, 0, 1, 3]
    assert curve[-1].specificity.value == 1.0
    assert curve[-1].sensitivity is not None and curve[-1].sensitivity.n == 1
    assert site_curve([]) == []


def test_site_curve_with_fewer_labels_than_points_has_one_point_per_label() -> None:
    assert [p.labels for p in site_curve(_cases()[:3], points=8)] == [1, 2, 3]


def _bench_json(path: Path) -> Path:
    def cell(repair: str, budget: int, policy: str, spec: float) -> dict:
        estimate = {"value": spec, "low": spec - 0.1, "high": spec + 0.1}
        return {
            "repair": repair,
            "budget": budget,
            "policy": policy,
            "means": {"specificity": estimate},
        }

    cells = [
        cell("head", 50, "combined", 0.8),
        cell("head", 0, "combined", 0.5),
        cell("threshold", 50, "combined", 0.1),
        cell("head", 50, "random", 0.7),
    ]
    path.write_text(json.dumps({"machine": {}, "cells": cells}))
    return path


def test_bench_curve_reads_the_policy_and_prefers_the_site_head(tmp_path: Path) -> None:
    curve = bench_curve(_bench_json(tmp_path / "site_onboarding.json"), "combined")
    assert [(p.labels, p.specificity.value) for p in curve] == [(0, 0.5), (50, 0.8)]
    assert curve[1].specificity.low == pytest.approx(0.7)
    assert bench_curve(tmp_path / "site_onboarding.json", "uncertainty") == []


def test_bench_curve_refuses_a_file_that_is_not_the_benchmarks(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match="cannot read the onboarding benchmark"):
        bench_curve(wrong, "combined")
    with pytest.raises(DataError, match="cannot read the onboarding benchmark"):
        bench_curve(tmp_path / "missing.json", "combined")
