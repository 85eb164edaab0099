"""The demo scenario end to end on the bundled data: the verdicts ``radvigil demo`` prints.

One run (module fixture) through a real uvicorn server, a real MLflow store and a real SQLite
database; every assertion reads that run's typed result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from radvigil.config import Settings
from radvigil.loop.scenario import Scenario
from radvigil.loop.scenario_types import ScenarioConfig, ScenarioResult
from radvigil.service.harness import running_service
from tests.helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> ScenarioResult:
    home: Path = tmp_path_factory.mktemp("scenario") / "home"
    return Scenario(ScenarioConfig.demo(REPO), Settings(home=home), running_service).run()


def test_act_one_promotes_a_gated_challenger(result: ScenarioResult) -> None:
    assert result.champion is not None and result.champion.verdict.passed
    assert result.drift is not None and result.drift.open_alerts
    assert result.triggers is not None and result.triggers.fired
    assert result.challenger is not None and result.challenger.verdict.passed
    assert result.promoted == result.challenger.version
    assert result.shadow is not None and result.shadow.pairs > 0
    assert result.canary is not None and set(result.canary.served_by) == {"champion", "challenger"}
    before, after = result.before_after
    assert before.version == result.champion.version and after.version == result.promoted


def test_late_labels_reach_the_labelled_monitors(result: ScenarioResult) -> None:
    judged = [m for m in result.labelled_monitors if m.drift is not None]
    assert judged and all(m.n_labelled >= 30 for m in judged)


def test_act_two_stops_the_bad_model_and_drills_a_rollback(result: ScenarioResult) -> None:
    act = result.act_two
    assert act is not None and not act.bad.verdict.passed
    assert act.champion_after == act.champion_before == result.promoted
    assert act.rolled_back_to == result.champion.version
    assert act.restored == result.promoted
