"""Monitoring: reference profiles, drift detectors, label-free performance, windows and alerts.

Typical use (the service and the loop do this; nothing here touches HTTP, the CLI, the database
or MLflow)::

    profile = ReferenceProfile.build(emb, probs, labels, stats, meta, class_names=task.classes)
    monitor = Monitor(profile, load_monitor_config("configs/monitoring.yaml"))
    profile = monitor.calibrate()          # thresholds at a 5% false-alarm rate per window
    profile.to_path(folder)                # logged inside the model version
    report = monitor.run(WindowData(embeddings=..., probs=..., stats=..., metadata=...))
    replay = monitor.alerts(history + [report], active_alerts)  # .opened, .resolved, .pending
"""

from radvigil.monitoring.alerts import (
    Alert,
    AlertRule,
    AlertState,
    PendingRule,
    RuleEvent,
    RuleReplay,
    acknowledge,
    exceedance,
    replay_rules,
    resolve,
)
from radvigil.monitoring.calibration import calibrate
from radvigil.monitoring.config import MonitorConfig, load_monitor_config, monitor_config_from_dict
from radvigil.monitoring.detectors import describe_detectors, detector_names, make_detector
from radvigil.monitoring.drifters import is_drifter, ood_score
from radvigil.monitoring.features import (
    STAT_COLUMNS,
    image_stats,
    image_stats_frame,
    output_features,
)
from radvigil.monitoring.guards import GUARD_NAMES, GuardFlag, check_guards, guard_table
from radvigil.monitoring.monitor import Monitor
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import Calibration, DetectorResult, WindowReport
from radvigil.monitoring.review_routing import ReviewPolicy, audit_selected, review_reasons
from radvigil.monitoring.windows import (
    UNLABELLED,
    Window,
    WindowData,
    count_windows,
    last_window,
    time_windows,
)

__all__ = [
    "GUARD_NAMES",
    "STAT_COLUMNS",
    "UNLABELLED",
    "Alert",
    "AlertRule",
    "AlertState",
    "Calibration",
    "DetectorResult",
    "GuardFlag",
    "Monitor",
    "MonitorConfig",
    "PendingRule",
    "ReferenceProfile",
    "ReviewPolicy",
    "RuleEvent",
    "RuleReplay",
    "Window",
    "WindowData",
    "WindowReport",
    "acknowledge",
    "audit_selected",
    "calibrate",
    "check_guards",
    "count_windows",
    "describe_detectors",
    "detector_names",
    "exceedance",
    "guard_table",
    "image_stats",
    "image_stats_frame",
    "is_drifter",
    "last_window",
    "load_monitor_config",
    "make_detector",
    "monitor_config_from_dict",
    "ood_score",
    "output_features",
    "replay_rules",
    "resolve",
    "review_reasons",
    "time_windows",
]
