"""Windows, alert rules and the alert state machine, the monitoring YAML, and a full monitor run.

The end-to-end run uses real PneumoniaMNIST images with the stand-in embedding and probabilities
of ``monitoring_data`` (PCA of real pixels + calibrated logistic regression).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radvigil.errors import ConfigError, InputError
from radvigil.monitoring import (
    AlertRule,
    AlertState,
    DetectorResult,
    Monitor,
    MonitorConfig,
    ReferenceProfile,
    WindowData,
    WindowReport,
    acknowledge,
    count_windows,
    exceedance,
    load_monitor_config,
    monitor_config_from_dict,
    replay_rules,
    resolve,
    time_windows,
)
from tests.unit.monitoring_data import brighten, split, stand_in

REPO = Path(__file__).resolve().parents[2]


def _report(flags: str, group: str | None = None, name: str = "mmd") -> list[WindowReport]:
    """One report per character: ``x`` flagged (statistic 2 > threshold 1), ``.`` clean."""
    return [
        WindowReport(
            window=f"w{i}",
            group=group,
            size=100,
            results=[
                DetectorResult(
                    name=name, statistic=2.0 if f == "x" else 0.5, threshold=1.0, drift=f == "x"
                )
            ],
        )
        for i, f in enumerate(flags)
    ]


def _opened(rules: list[AlertRule], history: list[WindowReport], **kwargs) -> list:
    return replay_rules(rules, history, **kwargs).opened


def test_rule_needs_k_consecutive_flagged_windows() -> None:
    rule = AlertRule(detector="mmd", consecutive=3, severity="critical")
    assert _opened([rule], _report("xx.xx")) == []
    (alert,) = _opened([rule], _report(".xxx"))
    assert alert.windows == ["w1", "w2", "w3"] and alert.state == AlertState.OPEN
    assert alert.rule == "mmd-drift" and alert.severity == "critical"


def test_an_early_window_of_a_multi_window_run_opens_its_alert() -> None:
    rule = AlertRule(detector="mmd", consecutive=1)
    replay = replay_rules([rule], _report("x.."))
    assert [(e.action, e.window) for e in replay.events] == [("open", "w0"), ("resolve", "w1")]
    streak = AlertRule(detector="mmd", consecutive=3)
    (alert,) = replay_rules([streak], _report("xxx.")).opened
    assert alert.windows == ["w0", "w1", "w2"]
    old = _report("x", group="site=A")
    new = [r.model_copy(update={"window": f"n{i}"}) for i, r in enumerate(_report("x."))]
    replay = replay_rules([rule], old + new, new={(None, "n0"), (None, "n1")})
    assert [(e.action, e.window) for e in replay.events] == [("open", "n0"), ("resolve", "n1")]


def test_streak_rules_that_cannot_fire_yet_say_so() -> None:
    rule = AlertRule(detector="label_shift", consecutive=3, severity="info")
    history = _report("xx", group="site=B", name="label_shift")
    replay = replay_rules([rule], history)
    assert replay.events == []
    (pending,) = replay.pending
    assert (pending.group, pending.streak, pending.needed, pending.available) == ("site=B", 2, 3, 2)
    assert "only 2 window(s) of site=B exist so far" in pending.message
    assert (
        replay_rules([rule], _report(".xx", name="label_shift"))
        .pending[0]
        .message.endswith("it fires if the next window is flagged too")
    )


def test_rules_run_per_group_and_skip_active_alerts() -> None:
    rule = AlertRule(detector="mmd", consecutive=2)
    history = _report("xx", group="site=A") + _report("x.", group="site=B")
    (alert,) = _opened([rule], history)
    assert alert.group == "site=A" and "on site=A" in alert.message
    assert _opened([rule], history, active=[alert]) == []


def test_alerts_carry_effect_size_and_times_threshold() -> None:
    (report,) = _report("x")
    result = report.results[0].model_copy(update={"effect_size": 0.7, "statistic": 4.0})
    report = report.model_copy(update={"results": [result]})
    (alert,) = _opened([AlertRule(detector="mmd")], [report])
    assert alert.effect_size == 0.7 and alert.times_threshold == pytest.approx(4.0)
    assert "(4x threshold); effect size 0.7" in alert.message
    auc = DetectorResult(name="dc", statistic=0.8, threshold=0.6, details={"null_centre": 0.5})
    assert exceedance(auc) == pytest.approx(3.0)


def test_threshold_override_and_skipped_windows() -> None:
    assert _opened([AlertRule(detector="mmd", threshold=3.0)], _report("x")) == []
    assert _opened([AlertRule(detector="mmd", threshold=0.1)], _report(".")) != []
    skipped = WindowReport(
        window="w", size=5, results=[DetectorResult(name="mmd", skipped="no embeddings")]
    )
    assert _opened([AlertRule(detector="mmd")], [skipped]) == []


def test_alert_state_machine() -> None:
    (alert,) = _opened([AlertRule(detector="mmd")], _report("x"))
    acked = acknowledge(alert, "dr.lee")
    assert acked.state == AlertState.ACKNOWLEDGED and acked.acknowledged_by == "dr.lee"
    done = resolve(acked, "dr.lee", "scanner firmware rolled back")
    assert done.state == AlertState.RESOLVED and not done.active
    with pytest.raises(InputError, match="is resolved; it cannot become acknowledged"):
        acknowledge(done, "dr.lee")
    assert resolve(alert, "ops", "false alarm").state == AlertState.RESOLVED


def test_alerts_resolve_after_k_clean_windows() -> None:
    rule = AlertRule(detector="mmd", consecutive=2)
    (alert,) = _opened([rule], _report("xx"))
    assert replay_rules([rule], _report("xx."), [alert]).resolved == []
    (resolved,) = replay_rules([rule], _report("xx.."), [alert]).resolved
    assert resolved.state == AlertState.RESOLVED and resolved.resolved_by == "monitor"


def test_count_and_time_windows_overall_and_per_site() -> None:
    sites = ["A", "B"] * 50
    times = pd.date_range("2026-01-01", periods=100, freq="h")
    data = WindowData(
        probs=np.full((100, 2), 0.5), metadata=pd.DataFrame({"site": sites}), timestamps=times
    )
    windows = count_windows(data, 20, by="site")
    assert [(w.group, w.size) for w in windows][:5] == [(None, 20)] * 5
    assert [w.group for w in windows[5:]] == ["site=A"] * 2 + ["site=B"] * 2
    assert windows[0].label == "rows 0-19"
    daily = time_windows(data, "1D", min_size=2)
    assert [w.size for w in daily] == [24, 24, 24, 24, 4]
    assert daily[0].start.isoformat() == "2026-01-01T00:00:00"
    with pytest.raises(InputError, match="invalid window frequency"):
        time_windows(data, "fortnightly")
    with pytest.raises(InputError, match="cannot group windows by 'scanner'"):
        count_windows(data, 20, by="scanner")


def test_window_columns_must_align() -> None:
    with pytest.raises(InputError, match="differ in length"):
        WindowData(probs=np.full((3, 2), 0.5), labels=np.zeros(4))


def test_shipped_yaml_equals_the_documented_defaults() -> None:
    assert load_monitor_config(REPO / "configs" / "monitoring.yaml") == MonitorConfig()


def test_invalid_configs_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"unknown detector 'ks'; valid detectors"):
        monitor_config_from_dict({"detectors": {"ks": {}}})
    with pytest.raises(ConfigError, match=r"alert rules name detectors \['mmd'\]"):
        monitor_config_from_dict({"detectors": {"bbsd": {}}, "alerts": [{"detector": "mmd"}]})
    with pytest.raises(ConfigError, match=r"alerts\.0\.consecutive"):
        monitor_config_from_dict({"alerts": [{"detector": "mmd", "consecutive": 0}]})


def test_monitor_calibrates_runs_and_alerts_on_real_images(tmp_path: Path) -> None:
    data = stand_in()
    reference, held = split(400)
    config = monitor_config_from_dict(
        {
            "calibration": {"window_sizes": [60], "n_boot": 20},
            "detectors": {"image_stats": {}, "mmd": {"n_permutations": 50}, "cbpe": {}},
            "alerts": [{"detector": "image_stats", "consecutive": 2}],
        }
    )
    monitor = Monitor(data.profile(reference), config)
    profile = monitor.calibrate()
    assert {c.detector for c in profile.calibrations} == {"image_stats", "mmd", "cbpe"}
    reloaded = ReferenceProfile.from_path(profile.to_path(tmp_path))
    monitor = Monitor(reloaded, config)
    images = data.images[held[:240]].copy()
    images[120:] = brighten(images[120:])
    windows = count_windows(data.window(held[:240], images), 60)
    reports = monitor.run_windows(windows)
    assert [r.result("image_stats").drift for r in reports] == [False, False, True, True]
    assert all(r.threshold_source == "calibrated" for r in reports[0].results)
    replay = monitor.alerts(reports)
    assert [a.windows for a in replay.opened] == [["rows 120-179", "rows 180-239"]]
    assert replay.resolved == []


def test_default_monitor_runs_every_detector_per_site_with_json_results() -> None:
    data = stand_in()
    reference, held = split(400)
    config = MonitorConfig.model_validate({"windows": {"size": 60}})
    monitor = Monitor(data.profile(reference), config)
    sites = ["A", "B"] * 60
    windows = monitor.windows(data.window(held[:120], sites=sites))
    assert [(w.group, w.size) for w in windows] == [
        (None, 60),
        (None, 60),
        ("site=A", 60),
        ("site=B", 60),
    ]
    overall = monitor.run(windows[0])
    assert [r.name for r in overall.results] == list(MonitorConfig().detectors)
    assert all(r.skipped is None for r in overall.results)
    assert overall.result("metadata").drift  # the reference saw only site A
    per_site = monitor.run(windows[3])
    assert per_site.group == "site=B"
    skipped = per_site.result("metadata").skipped
    assert skipped == "no metadata columns shared by reference and window"
    assert WindowReport.model_validate_json(per_site.model_dump_json()) == per_site
