"""The demo's closed loop end to end, exactly as ``make demo`` runs it: the bundled real data,
the pretrained demo config, the production gates of configs/gates.yaml, a real uvicorn service,
a real MLflow store and SQLite. Asserts the verdicts every run must reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from radvigil.config import Settings, get_settings, reset_settings
from radvigil.demo.harness import running_service
from radvigil.demo.outcomes import ScenarioConfig
from radvigil.demo.scenario import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUN_FIRST = True  # the longest test of the suite: see tests/conftest.py
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def trusted_home(home: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The home with registry trust enforced, as ``make demo`` runs (the product default)."""
    monkeypatch.setenv("RADVIGIL_REGISTRY_TRUST", "enforce")
    reset_settings()
    return get_settings()


def test_the_demo_scenario_closes_the_loop_on_production_gates(trusted_home: Settings) -> None:
    home = trusted_home
    assert home.registry_trust == "enforce"
    config = ScenarioConfig.demo(REPO)
    assert config.criteria.name == "gates.yaml"  # no demo-only loosening

    result = Scenario(config, home, running_service).run()

    verdicts = result.verdicts
    assert verdicts["champion_gate"] is True, result.champion.verdict.summary()
    _every_row_has_room(result.champion.verdict)
    assert result.labelled <= config.label_budget  # clinicians label what the budget allows
    drift = result.drift
    assert drift is not None and drift.champion is not None
    assert drift.open_alerts, "the acquisition change raised no alert"
    assert verdicts["triggers"], "no retraining trigger fired"
    # the labelled monitors judged windows once the labels arrived
    assert any(m.drift is not None for m in result.labelled_monitors)
    _robustness_is_reported_by_name(result)
    proposed = result.proposed
    if proposed is None:
        _stopped_challenger_keeps_the_champion(home, result)
        pytest.xfail(  # visible in every run's summary: no repair shipped this time
            "the gates stopped both the challenger and the site calibration: "
            f"{result.challenger.verdict.summary()}"
        )
    # act one: the repair that passed its gates is shadowed, canaried and promoted
    assert result.shadow is not None and result.shadow.pairs == config.shadow_studies
    assert result.canary is not None and len(result.canary.served_by) == 2
    assert verdicts["promoted"] == proposed.version
    before, after = result.before_after[:2]
    assert after.sensitivity.value >= 0.97
    assert after.n == before.n > 0
    # act two: the shuffled-label model is stopped, the champion is unchanged, rollback drilled
    assert verdicts["bad_stopped_by"] == "gates"
    two = result.act_two
    assert two.champion_after == two.champion_before == proposed.version
    assert two.rolled_back_to == result.champion.version
    assert two.restored == proposed.version
    if proposed is not result.challenger:
        # the cheap repair shipped: the champion's weights, recalibrated on the site's labels,
        # with the site's own threshold fitted on them (#29): its rows keep room too, and the
        # held-out drift-era studies show the site threshold's lift
        assert result.challenger.verdict.failures, "a failed verdict names its failing checks"
        _every_row_has_room(result.site_calibrated.verdict)
        assert after.specificity.value >= before.specificity.value + 0.15  # 0.17 -> 0.41 (7 Dec)
        pytest.xfail(  # issue #29: the retrained repair, with room on every row, is the goal
            "the gates stopped the retrained challenger "
            f"({result.challenger.verdict.summary()}); site calibration shipped instead: "
            f"held-out drift-era specificity {before.specificity.value:.3f} -> "
            f"{after.specificity.value:.3f}"
        )
    _every_row_has_room(result.challenger.verdict)
    assert after.specificity.value >= before.specificity.value + 0.30  # the repair shows


def _stopped_challenger_keeps_the_champion(home: Settings, result) -> None:
    """A challenger the gates stop is named by its failing checks, never shadowed, canaried or
    promoted, and the gated champion keeps the alias (the loop's safety, whatever the verdict)."""
    from radvigil.registry import Registry

    assert result.challenger.verdict.failures, "a failed verdict names its failing checks"
    assert result.shadow is None and result.canary is None
    assert result.verdicts["promoted"] is None and result.act_two is None
    registry = Registry(home.resolved_tracking_uri, home.artifacts_dir, home.home_dir / "cache")
    name = home.model_name
    assert registry.resolve(f"{name}@champion").version == result.champion.version


def _robustness_is_reported_by_name(result) -> None:
    """The champion and the challenger are judged under every mild perturbation of the
    production gates' advisory robustness gate, each row names its perturbation, the worst is
    named on screen, and (advisory) the loop went on whatever it said (issue #33)."""
    for gated in (result.champion, result.challenger):
        rows = gated.verdict.advisory
        shifts = {"jpeg", "sharpen", "blur", "gaussian_noise", "speckle", "gamma", "rotation"}
        assert {r.subgroup.split(" mild")[0] for r in rows} >= shifts | {"resolution"}
        assert all(r.gate == "robustness" and r.status in ("pass", "fail") for r in rows)
    outcome = next(s.outcome for s in result.steps if s.name.startswith("Train, calibrate"))
    assert "advisory, not gating" in outcome
    if not result.verdicts["champion_robust"]:
        assert "worst specificity change" in outcome or "worst sensitivity change" in outcome
        failing = [r for r in result.champion.verdict.advisory if r.status == "fail"]
        assert min(r.margin for r in failing) <= -0.05  # a failing verdict with room (#33)
    assert result.verdicts["challenger_robust"] is result.challenger.verdict.advisory_passed


def _required_room(row) -> float:
    """The room an act-one gate row must keep (issue #29: no verdict may hang on one case or on
    rounding): 0.05 where the bound leaves that much, half the room a sensitivity floor leaves
    below 1.0 (0.01 at 0.98: one missed case of the hold-out's ~140 is allowed, two are not),
    and any room at all for a non-inferiority row, whose margin (0.01-0.02) is all a challenger
    equal to its champion can have."""
    if row.gate == "non_inferiority":
        return 1e-9
    if row.metric == "sensitivity":
        return min(0.05, (1.0 - row.threshold) / 2)
    return 0.05


def _every_row_has_room(verdict) -> None:
    tight = [
        f"{row.name}/{row.metric}: room {row.margin:.3f} < {_required_room(row):.3f}"
        for row in verdict.rows
        if row.gating  # advisory rows decide nothing; _robustness_is_reported_by_name reads them
        and row.status == "pass"
        and row.margin is not None
        and row.margin < _required_room(row)
    ]
    assert not tight, "; ".join(tight)
