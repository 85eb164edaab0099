"""The monitor: one model version's profile, the configured detectors, windows and alert rules.

This is the entry point the service, the CLI and the retraining loop call; it knows nothing of
where predictions are stored. Give it :class:`WindowData` (or cut :class:`Window` objects) and
it returns :class:`WindowReport` objects; feed the reports to :meth:`Monitor.alerts`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

from radvigil.errors import ConfigError
from radvigil.monitoring.alerts import Alert, RuleReplay, replay_rules
from radvigil.monitoring.calibration import calibrate
from radvigil.monitoring.config import MonitorConfig
from radvigil.monitoring.detectors import make_detector
from radvigil.monitoring.drifters import is_drifter
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult, WindowReport
from radvigil.monitoring.windows import Window, WindowData, count_windows, time_windows

log = logging.getLogger(__name__)


class Monitor:
    """Runs the configured detectors against ``profile`` on windows of predictions."""

    def __init__(self, profile: ReferenceProfile, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self.profile = profile
        built = [make_detector(name, **params) for name, params in self.config.detectors.items()]
        # Detectors that read other results (concept drift) run after the ones they read.
        self.detectors = sorted(built, key=lambda d: d.uses_context)

    def calibrate(self, window_sizes: Sequence[int] | None = None) -> ReferenceProfile:
        """Calibrate every detector that can run on reference windows; keep and return the profile.

        Detectors the reference cannot feed (e.g. label-based ones without reference labels)
        keep their default thresholds, and the log says so.
        """
        cfg = self.config.calibration
        found = []
        for size in window_sizes or cfg.window_sizes:
            for detector in (d for d in self.detectors if d.calibrated):
                try:
                    found.append(
                        calibrate(detector, self.profile, size, cfg.n_boot, cfg.alpha, cfg.seed)
                    )
                except ConfigError as exc:
                    log.warning("%s; it keeps its default threshold", exc.message)
        self.profile = self.profile.with_calibrations(found)
        return self.profile

    def run(self, window: Window | WindowData, *, seed: int = 0) -> WindowReport:
        """All detectors on one window, reported in configuration order.

        Per-group windows are compared with the whole reference, without their grouping column.
        """
        win = window if isinstance(window, Window) else Window("window", window)
        data = self.profile.prepare(self.canonical(win.data))
        if win.group_by is not None and data.metadata is not None:
            # A per-group window holds one value of its grouping column by construction.
            data = dataclasses.replace(data, metadata=data.metadata.drop(columns=[win.group_by]))
        context: dict[str, DetectorResult] = {}
        for detector in self.detectors:
            context[detector.name] = detector.run(self.profile, data, context=context, seed=seed)
        return WindowReport(
            window=win.label,
            group=win.group,
            start=win.start,
            end=win.end,
            size=win.size,
            results=[context[name] for name in self.config.detectors],
        )

    def canonical(self, data: WindowData) -> WindowData:
        """Metadata in the reference's spelling (configured aliases); absent values as missing."""
        if data.metadata is None:
            return data
        frame = data.metadata.copy()
        for column in frame.columns:
            known = self.profile.value_counts.get(column, {})
            frame[column] = [self.config.canonical(column, v, known) for v in frame[column]]
        return dataclasses.replace(data, metadata=frame)

    def windows(self, data: WindowData, kind: Literal["count", "time"] = "count") -> list[Window]:
        """Cut predictions into the configured count or time windows, overall and per group."""
        cfg = self.config.windows
        data = self.canonical(data)
        by = cfg.group_by if data.metadata is not None and cfg.group_by in data.metadata else None
        if kind == "count":
            return count_windows(data, cfg.size, by=by)
        return time_windows(data, cfg.freq, by=by, min_size=cfg.min_size)

    def run_windows(self, windows: Iterable[Window], *, seed: int = 0) -> list[WindowReport]:
        """Reports for a sequence of windows, in the same order."""
        return [self.run(w, seed=seed) for w in windows]

    def drifter(
        self, ood: float | None, quality_flags: Mapping[str, bool] | Iterable[str]
    ) -> tuple[bool, list[str]]:
        """Per-case drifter verdict and reasons, counting the configured quality flags."""
        counted = self.config.drifters.quality_flags
        return is_drifter(ood, quality_flags, self.profile, counted_flags=counted)

    def alerts(
        self,
        history: Sequence[WindowReport],
        active: Iterable[Alert] = (),
        new: Collection[tuple[str | None, str]] | None = None,
    ) -> RuleReplay:
        """The configured rules replayed over the ``new`` windows of ``history`` (all if None)."""
        return replay_rules(self.config.alerts, history, active, new)
