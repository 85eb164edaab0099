"""Budgeted label selection and the cross-fitted site threshold, on synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest

from radvigil.errors import DataError
from radvigil.evaluation.crossfit import crossfit_threshold
from radvigil.metrics import threshold_for_sensitivity
from radvigil.monitoring.label_selection import (
    AUDIT,
    POLICIES,
    Budget,
    Candidates,
    LabelledCase,
    audit_performance,
    select,
    split_by_source,
)


def _pool(n: int = 200, seed: int = 0) -> Candidates:
    rng = np.random.default_rng(seed)
    return Candidates(
        ids=[f"case-{i}" for i in range(n)],
        margin=rng.uniform(0, 0.5, n),
        embeddings=rng.normal(size=(n, 4)),
        drifter=rng.uniform(size=n) < 0.05,
    )


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_budget_is_respected_and_no_case_is_chosen_twice(policy: str) -> None:
    pool = _pool()
    choices = select(pool, Budget.split(30, 0.2), policy=policy, seed=3)
    assert len(choices) == 30
    assert len({c.id for c in choices}) == 30
    assert sum(c.audit for c in choices) == 6
    assert all(c.policy == policy for c in choices if not c.audit)
    assert all(c.reason for c in choices)


def test_budget_already_spent_offers_nothing() -> None:
    budget = Budget.split(20, 0.1, spent=20, audit_spent=2)
    assert budget == Budget(policy=0, audit=0)
    assert select(_pool(), budget) == []


def test_spent_labels_are_charged_to_the_audit_and_policy_parts_apart() -> None:
    assert Budget.split(100, 0.1, spent=30, audit_spent=4) == Budget(policy=64, audit=6)
    # An audit part already spent leaves the policy part whole, and the reverse.
    assert Budget.split(100, 0.1, spent=10, audit_spent=10) == Budget(policy=90, audit=0)
    assert Budget.split(100, 0.1, spent=95, audit_spent=0) == Budget(policy=0, audit=10)


def test_budget_larger_than_the_pool_offers_the_pool_once() -> None:
    choices = select(_pool(12), Budget(policy=50, audit=5), policy="combined")
    assert sorted(c.index for c in choices) == list(range(12))


def test_uncertainty_ranks_by_distance_from_the_operating_threshold() -> None:
    pool = Candidates(ids=list("abcd"), margin=np.array([0.30, 0.01, 0.20, 0.05]))
    assert [c.id for c in select(pool, Budget(policy=3), policy="uncertainty")] == ["b", "d", "c"]


def test_audit_share_is_kept_apart_from_the_policy_and_stays_put() -> None:
    pool = _pool()
    first = select(pool, Budget(policy=10, audit=5), policy="uncertainty", seed=7)
    audit = [c.id for c in first if c.audit]
    # The audit sample does not follow the policy: its cases are not the most uncertain.
    most_uncertain = set(np.array(pool.ids)[np.argsort(pool.margin)[:15]])
    assert not set(audit) <= most_uncertain
    # Labelling other cases does not move it (a hash of the id, not a position in the pool).
    keep = [i for i, name in enumerate(pool.ids) if name not in {c.id for c in first[5:]}]
    smaller = Candidates(ids=[pool.ids[i] for i in keep], margin=pool.margin[keep])
    again = select(smaller, Budget(policy=0, audit=5), seed=7)
    assert [c.id for c in again] == audit
    # Another seed draws another sample.
    other = select(pool, Budget(policy=0, audit=5), seed=8)
    assert {c.id for c in other} != set(audit)


@pytest.mark.parametrize("policy", ["random", "uncertainty"])
def test_the_draws_follow_the_studies_not_the_request_ids(policy: str) -> None:
    """The same studies sent again get new request ids; keyed by content (the study hash), the
    audit sample and the random policy draw the same studies, so a rerun labels the same set."""
    pool = _pool()
    keys = [f"study-{i}" for i in range(len(pool.ids))]
    first = Candidates(ids=pool.ids, margin=pool.margin, keys=keys)
    rerun = Candidates(ids=[f"new-{i}" for i in range(len(keys))], margin=pool.margin, keys=keys)
    budget = Budget(policy=10, audit=5)
    a = [c.index for c in select(first, budget, policy=policy, seed=3)]
    b = [c.index for c in select(rerun, budget, policy=policy, seed=3)]
    assert a == b
    by_id = Candidates(ids=rerun.ids, margin=pool.margin)  # without keys: the ids decide
    assert [c.index for c in select(by_id, budget, policy=policy, seed=3)][:5] != a[:5]
    with pytest.raises(ValueError, match="keys"):
        Candidates(ids=pool.ids, margin=pool.margin, keys=keys[:3])


def test_audit_labels_are_reported_separately() -> None:
    # The policy's labels are all hard misses; the audit sample is the site as it is.
    cases = [LabelledCase(positive=True, flagged=False, policy="combined")] * 40
    cases += [LabelledCase(positive=True, flagged=True, policy=AUDIT)] * 9
    cases += [LabelledCase(positive=True, flagged=False, policy=AUDIT)] * 1
    cases += [LabelledCase(positive=False, flagged=False, policy=AUDIT)] * 8
    cases += [LabelledCase(positive=False, flagged=True, policy=AUDIT)] * 2
    audit, rest = split_by_source(cases)
    assert len(audit) == 20 and len(rest) == 40
    sensitivity, specificity = audit_performance(cases)
    assert sensitivity.value == pytest.approx(0.9) and sensitivity.n == 10
    assert specificity.value == pytest.approx(0.8) and specificity.n == 10
    assert sensitivity.low < 0.9 < sensitivity.high


def _coverage_radius(points: np.ndarray, chosen: list[int]) -> float:
    """The farthest any pool point is from its nearest chosen point (lower = better spread)."""
    d = np.linalg.norm(points[:, None, :] - points[chosen][None, :, :], axis=2)
    return float(d.min(axis=1).max())


def test_diversity_beats_uncertainty_only_on_cluster_spread() -> None:
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    cluster = np.repeat(np.arange(4), 50)
    points = centres[cluster] + rng.normal(scale=0.5, size=(200, 2))
    # Cluster 0 holds the most uncertain cases; the others are only a little less uncertain.
    margin = np.where(cluster == 0, 0.0, 0.05) + rng.uniform(0, 0.01, 200)
    pool = Candidates(ids=[str(i) for i in range(200)], margin=margin, embeddings=points)
    picks = {
        name: [c.index for c in select(pool, Budget(policy=8), policy=name)]
        for name in ("uncertainty", "combined")
    }
    assert set(cluster[picks["uncertainty"]]) == {0}
    assert set(cluster[picks["combined"]]) == {0, 1, 2, 3}
    assert _coverage_radius(points, picks["combined"]) < _coverage_radius(
        points, picks["uncertainty"]
    )


def test_combined_takes_drifters_first_and_says_why() -> None:
    pool = Candidates(
        ids=list("abcde"),
        margin=np.array([0.01, 0.4, 0.02, 0.3, 0.03]),
        embeddings=np.eye(5),
        drifter=np.array([False, True, False, False, False]),
    )
    choices = select(pool, Budget(policy=3), policy="combined")
    assert choices[0].id == "b" and choices[0].reason.startswith("drifter")
    assert all("diverse" in c.reason for c in choices[1:])


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown selection policy"):
        select(_pool(), Budget(policy=1), policy="loudest")


def test_crossfitted_threshold_is_honest_where_the_in_sample_one_is_not() -> None:
    """Over many small sites, the in-sample sensitivity of the fitted threshold always meets the
    target; on fresh patients it does not. The cross-fitted estimate tracks the fresh one."""
    rng = np.random.default_rng(0)
    in_sample, crossfit, fresh = [], [], []
    for _ in range(200):
        n = 60
        positive = rng.uniform(size=n) < 0.5
        scores = rng.normal(loc=positive * 1.5)
        patients = np.arange(n) // 2  # two studies per patient
        result = crossfit_threshold(positive, scores, patients, target_sensitivity=0.97)
        assert result.threshold == threshold_for_sensitivity(positive, scores, 0.97)
        new_positive_scores = rng.normal(loc=1.5, size=2000)
        in_sample.append(result.in_sample_sensitivity)
        crossfit.append(result.sensitivity)
        fresh.append(float((new_positive_scores >= result.threshold).mean()))
    in_sample, crossfit, fresh = map(np.mean, (in_sample, crossfit, fresh))
    assert in_sample >= 0.97
    assert fresh < in_sample - 0.02  # the in-sample figure flatters
    assert abs(crossfit - fresh) < abs(in_sample - fresh) / 2


def test_crossfitting_keeps_a_patients_studies_in_one_fold() -> None:
    positive = np.array([True, False] * 10)
    scores = np.linspace(0, 1, 20)
    with pytest.raises(DataError, match="at least 5 patients"):
        crossfit_threshold(positive, scores, np.repeat(np.arange(4), 5))


def test_site_calibration_records_crossfitted_rates_beside_the_threshold() -> None:
    import pandas as pd

    from radvigil.loop.site_calibration import crossfit_estimates
    from radvigil.task import Task

    task = Task(name="t", classes=["normal", "pneumonia"], findings=["pneumonia"])
    rng = np.random.default_rng(2)
    targets = (rng.uniform(size=80) < 0.5).astype(int)
    p = 1 / (1 + np.exp(-rng.normal(loc=targets * 2.0 - 1.0)))
    probs = np.column_stack([1 - p, p])
    frame = pd.DataFrame({"patient_id": [f"p{i // 2}" for i in range(80)]})
    fit = crossfit_estimates(task, targets, frame, probs)["pneumonia"]
    assert fit["threshold"] == pytest.approx(
        threshold_for_sensitivity(targets == 1, p, 0.98), abs=1e-6
    )
    assert fit["in_sample_sensitivity"] >= 0.98 and fit["folds"] == 5
    assert 0.0 <= fit["specificity"] <= 1.0 and fit["sensitivity"] <= 1.0
    # Too few patients to cross-fit: said, not hidden.
    thin = crossfit_estimates(task, targets[:8], frame.head(8), probs[:8])["pneumonia"]
    assert "at least 5 patients" in thin["skipped"]
