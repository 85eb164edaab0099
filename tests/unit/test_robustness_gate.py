"""The robustness gate on a real (deliberately fragile) model: a raw-pixel logistic regression
fitted on PneumoniaMNIST (28x28 Kermany films), judged on its test films clean and perturbed with
:mod:`radvigil.data.shifts`. A raw-pixel model has no invariance to tone, so a mild gamma change
moves its specificity; a near-lossless recompression does not."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from radvigil.data.shifts import PROCESSING_SUITE, apply_shift, get_shift
from radvigil.errors import ConfigError
from radvigil.evaluation import EvaluationInputs, criteria_from_dict, load_criteria, run_gates
from radvigil.evaluation.criteria import Robustness
from radvigil.evaluation.gates import perturbed_key

CLASSES = ["normal", "pneumonia"]
REPO = Path(__file__).resolve().parents[2]


@lru_cache
def _fragile(shared_data: Path) -> tuple[LogisticRegression, np.ndarray, np.ndarray, float]:
    data = np.load(shared_data / "medmnist" / "pneumoniamnist_balanced_28.npz")
    train = data["train_images"].reshape(len(data["train_images"]), -1) / 255.0
    with threadpool_limits(1):
        model = LogisticRegression(C=0.01, max_iter=200).fit(train, data["train_labels"].ravel())
    images, labels = data["test_images"], np.asarray(CLASSES)[data["test_labels"].ravel()]
    clean = model.predict_proba(images.reshape(len(images), -1) / 255.0)[:, 1]
    threshold = float(np.quantile(clean[labels == "pneumonia"], 0.05))  # sensitivity ~0.95
    return model, images, labels, threshold


def _outputs(shared_data: Path, shift=None, seed: int = 0) -> EvaluationInputs:
    model, images, labels, threshold = _fragile(shared_data)
    if shift is not None:
        images = np.stack([apply_shift(x, shift, (seed, i)) for i, x in enumerate(images)])
    p = model.predict_proba(images.reshape(len(images), -1) / 255.0)
    return EvaluationInputs(labels, p, {"pneumonia": threshold}, item_ids=None)


def _suite(**levels: tuple[dict, dict]) -> list[dict]:
    return [{"shift": k, "mild": m, "strong": s} for k, (m, s) in levels.items()]


def _verdict(shared_data: Path, suite: list[dict], **gate):
    criteria = criteria_from_dict(
        {"n_resamples": 300, "gates": [{"kind": "robustness", "suite": suite, **gate}]}
    )
    config = criteria.gates[0]
    assert isinstance(config, Robustness)
    perturbed = {
        perturbed_key(item.shift, level): _outputs(
            shared_data, get_shift(item.shift, **params), config.seed
        )
        for item in config.suite
        for level, params in (("mild", item.mild), ("strong", item.strong))
    }
    return run_gates(
        criteria,
        _outputs(shared_data),
        classes=CLASSES,
        findings=["pneumonia"],
        perturbed=perturbed,
    )


def test_a_fragile_model_fails_by_the_perturbation_name(shared_data: Path) -> None:
    suite = _suite(
        jpeg=({"quality": 95}, {"quality": 20}),
        gamma=({"gamma": 1.4}, {"gamma": 2.0}),
    )
    verdict = _verdict(shared_data, suite)
    assert not verdict.passed
    failed = verdict.failures
    assert failed and all(row.subgroup.startswith("gamma mild") for row in failed)
    assert any("worst of the suite: gamma mild (gamma 1.4; seed 0)" in r.message for r in failed)
    jpeg = [r for r in verdict.rows if r.subgroup.startswith("jpeg mild")]
    assert jpeg and all(r.status == "pass" for r in jpeg)
    assert all(f"perturbed - clean {r.metric}" in r.message for r in failed)


def test_an_advisory_gate_is_judged_and_named_but_does_not_decide(shared_data: Path) -> None:
    suite = _suite(
        jpeg=({"quality": 95}, {"quality": 20}),
        gamma=({"gamma": 1.4}, {"gamma": 2.0}),
    )
    gating = _verdict(shared_data, suite, report_strong=False)
    advisory = _verdict(shared_data, suite, report_strong=False, gating=False)
    assert not gating.passed and advisory.passed
    assert advisory.failures == [] and advisory.advisory_passed is False
    # the same rows, judged the same way: only whether they decide differs
    assert [(r.subgroup, r.status, r.value) for r in advisory.rows] == [
        (r.subgroup, r.status, r.value) for r in gating.rows
    ]
    assert all(not r.gating for r in advisory.rows)
    assert advisory.summary().startswith("PASS: 0 checks passed, 0 skipped; advisory, not gating:")
    assert "failed (gamma mild)" in advisory.summary()
    assert advisory.tightest() is None  # an advisory row is never the verdict's tightest


def test_the_shipped_gates_judge_robustness_as_advisory() -> None:
    shipped = load_criteria(REPO / "configs" / "gates.yaml")
    (robust,) = [g for g in shipped.gates if isinstance(g, Robustness)]
    assert robust.gating is False and robust.report_strong is False
    assert {p.shift for p in robust.suite} == set(PROCESSING_SUITE)
    assert robust.max_drop == {"sensitivity": 0.05, "specificity": 0.10}
    assert all(g.gating for g in shipped.gates if g is not robust)


def test_strong_strengths_are_reported_not_gated(shared_data: Path) -> None:
    verdict = _verdict(shared_data, _suite(jpeg=({"quality": 95}, {"quality": 5})))
    strong = [r for r in verdict.rows if "strong" in (r.subgroup or "")]
    assert len(strong) == 2 and all(r.status == "skipped" for r in strong)
    assert all(r.message.startswith("reported, not gated:") for r in strong)
    assert verdict.passed
    mild_only = _verdict(
        shared_data, _suite(jpeg=({"quality": 95}, {"quality": 5})), report_strong=False
    )
    assert not any("strong" in (r.subgroup or "") for r in mild_only.rows)


def test_the_bound_is_a_configured_drop_with_a_confidence_interval(shared_data: Path) -> None:
    suite = _suite(gamma=({"gamma": 1.4}, {"gamma": 2.0}))
    loose = _verdict(shared_data, suite, max_drop={"sensitivity": 1.0, "specificity": 1.0})
    assert loose.passed
    row = next(r for r in loose.rows if r.metric == "specificity" and r.status == "pass")
    assert row.threshold == -1.0 and row.judged == "ci_lower"
    assert row.ci_low is not None and row.ci_low <= row.value <= row.ci_high


def test_without_perturbed_outputs_the_gate_is_skipped(shared_data: Path) -> None:
    criteria = criteria_from_dict({"n_resamples": 200, "gates": [{"kind": "robustness"}]})
    verdict = run_gates(criteria, _outputs(shared_data), classes=CLASSES, findings=["pneumonia"])
    assert verdict.passed and {r.status for r in verdict.rows} == {"skipped"}


def test_the_default_suite_covers_the_processing_a_hospital_does() -> None:
    config = criteria_from_dict({"gates": [{"kind": "robustness"}]}).gates[0]
    assert {p.shift for p in config.suite} == {
        "jpeg",
        "sharpen",
        "blur",
        "gaussian_noise",
        "speckle",
        "gamma",
        "rotation",
        "resolution",
    }
    assert config.max_drop == {"sensitivity": 0.05, "specificity": 0.10}


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        (_suite(sharpness=({"amount": 1}, {"amount": 2})), "unknown shift 'sharpness'"),
        (_suite(jpeg=({"q": 60}, {"quality": 20})), "no parameter"),
        (_suite(jpeg=({"quality": 60}, {"quality": 500})), "outside"),
    ],
)
def test_a_bad_suite_is_refused_with_the_reason(suite, message) -> None:
    with pytest.raises(ConfigError, match=message):
        criteria_from_dict({"gates": [{"kind": "robustness", "suite": suite}]})
