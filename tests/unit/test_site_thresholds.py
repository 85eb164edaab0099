"""Site operating thresholds (issue #29): a version may flag one site's studies at thresholds
fitted on that site's own labelled cases; the report, the gates and the card apply them to
that site's items only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radvigil.errors import ConfigError
from radvigil.evaluation import EvaluationInputs, criteria_from_dict, evaluate, run_gates
from radvigil.evaluation.decision import row_thresholds, selected_thresholds, site_column
from radvigil.model.card import ModelCard
from tests.helpers import small_card
from tests.unit.evaluation_data import Predictions, pneumonia_binary


@pytest.fixture(scope="module")
def binary(shared_data: Path) -> Predictions:
    return pneumonia_binary(shared_data)


def test_rows_from_a_site_with_its_own_thresholds_take_them() -> None:
    cuts = row_thresholds(
        {"pneumonia": 0.04, "tb": 0.2},
        ["pneumonia", "tb"],
        ["north", None, "south", "north"],
        {"north": {"pneumonia": 0.3}},
    )
    assert cuts.shape == (4, 2)
    np.testing.assert_allclose(cuts[:, 0], [0.3, 0.04, 0.04, 0.3])
    np.testing.assert_allclose(cuts[:, 1], 0.2)  # a finding the site did not refit keeps its own
    north = np.array([1, 0, 0, 1], bool)
    np.testing.assert_allclose(selected_thresholds(cuts, north)[:, 0], [0.3, 0.3])


def test_without_a_listed_site_the_version_vector_is_kept() -> None:
    base = {"pneumonia": 0.04}
    assert row_thresholds(base, ["pneumonia"], None, {"north": {"pneumonia": 0.3}}).shape == (1,)
    assert row_thresholds(base, ["pneumonia"], ["south", None], {"north": {"x": 1}}).shape == (1,)
    assert row_thresholds(base, ["pneumonia"], ["north"], {}).shape == (1,)
    with pytest.raises(ConfigError, match="must lie in"):
        row_thresholds(base, ["pneumonia"], ["north"], {"north": {"pneumonia": 1.5}})


def test_site_column_reads_blank_and_missing_sites_as_none() -> None:
    assert site_column(None) is None
    assert site_column(pd.DataFrame({"x": [1]})) is None
    assert site_column(pd.DataFrame({"site": ["a", "", None]})) == ["a", None, None]


def test_the_card_gives_a_site_its_own_thresholds_and_everyone_else_the_versions() -> None:
    card = small_card(thresholds={"pneumonia": 0.04}, site_thresholds={"north": {"pneumonia": 0.3}})
    assert card.operating_thresholds("north") == {"pneumonia": 0.3}
    assert card.operating_thresholds("south") == {"pneumonia": 0.04}
    assert card.operating_thresholds() == {"pneumonia": 0.04}
    old = ModelCard.model_validate(card.model_dump(exclude={"site_thresholds"}))
    assert old.site_thresholds == {}  # cards written before site thresholds still load


def _site_half(binary: Predictions) -> tuple[pd.DataFrame, float, float]:
    """Half of the test items from site north; a low version threshold and a higher site one."""
    n = len(binary.y_test)
    frame = pd.DataFrame({"site": ["north" if i % 2 else "" for i in range(n)]})
    p = binary.p_test[:, 1]
    return frame, float(np.quantile(p, 0.05)), float(np.quantile(p, 0.5))


def test_evaluation_flags_the_sites_items_at_the_sites_threshold(binary: Predictions) -> None:
    frame, low, high = _site_half(binary)
    args = (binary.y_test, binary.p_test, binary.classes, binary.findings, {"pneumonia": low})
    plain = evaluate(*args, frame)
    sited = evaluate(*args, frame, site_thresholds={"north": {"pneumonia": high}})
    north = frame["site"].to_numpy() == "north"
    negative = binary.y_test == "normal"
    flagged = binary.p_test[:, 1] >= np.where(north, high, low)
    expected_tn = int((~flagged & negative).sum())
    assert sited.finding_metrics[0].tn == expected_tn > plain.finding_metrics[0].tn
    assert sited.finding_metrics[0].threshold == plain.finding_metrics[0].threshold == low
    assert sited.site_thresholds == {"north": {"pneumonia": high}}
    assert plain.site_thresholds == {}


def test_gates_judge_the_sites_items_at_the_sites_threshold(binary: Predictions) -> None:
    frame, low, high = _site_half(binary)
    criteria = criteria_from_dict(
        {"n_resamples": 200, "gates": [{"kind": "min_specificity", "default": 0.3}]}
    )

    def verdict(site_thresholds):
        inputs = EvaluationInputs(
            binary.y_test,
            binary.p_test,
            {"pneumonia": low},
            frame,
            site_thresholds=site_thresholds,
        )
        return run_gates(
            criteria, inputs, None, None, classes=binary.classes, findings=binary.findings
        )

    version_only = verdict(None)
    with_site = verdict({"north": {"pneumonia": high}})
    assert version_only.rows[0].value < with_site.rows[0].value
    negative = binary.y_test == "normal"
    north = frame["site"].to_numpy() == "north"
    flagged = binary.p_test[:, 1] >= np.where(north, high, low)
    assert with_site.rows[0].value == pytest.approx((~flagged[negative]).mean())


def test_one_micro_batch_of_concurrent_studies_flags_each_at_its_own_sites_threshold() -> None:
    """Concurrent requests share one model call (the service's micro-batcher): each study in
    the batch is still flagged at the threshold of the site its request named."""
    from types import SimpleNamespace

    from radvigil.service.inference import decide_batch

    served = SimpleNamespace(
        classes=["normal", "pneumonia"],
        findings=["pneumonia"],
        thresholds={"pneumonia": 0.05},
        site_thresholds={"north": {"pneumonia": 0.3}},
    )
    probs = np.array([[0.8, 0.2]] * 4)
    predicted, flagged, _ = decide_batch(served, probs, ["north", None, "south", "north"])
    assert flagged == [[], ["pneumonia"], ["pneumonia"], []]
    assert predicted == ["normal", "pneumonia", "pneumonia", "normal"]
