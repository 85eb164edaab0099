"""What monitors return: one detector on one window, a window's report, a calibrated threshold.

Plain pydantic models with JSON-safe fields, so the store can persist them as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ThresholdSource = Literal["default", "calibrated", "override"]


class DetectorResult(BaseModel):
    """One detector's verdict on one window.

    ``statistic`` always grows with drift and ``drift`` is ``statistic > threshold`` unless
    ``vetoed`` gives a reason to hold the flag back; ``skipped`` says why nothing was computed.
    """

    name: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    threshold_source: ThresholdSource | None = None
    drift: bool = False
    effect_size: float | None = None
    n_reference: int = 0
    n_window: int = 0
    details: dict[str, Any] = Field(default_factory=dict)
    vetoed: str | None = None
    skipped: str | None = None


class WindowReport(BaseModel):
    """All detector results for one window of predictions."""

    window: str
    group: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    size: int
    results: list[DetectorResult]

    def result(self, name: str) -> DetectorResult | None:
        """The result of detector ``name``, if it ran on this window."""
        return next((r for r in self.results if r.name == name), None)

    @property
    def drifted(self) -> list[str]:
        """Names of the detectors that flagged drift."""
        return [r.name for r in self.results if r.drift]


class Calibration(BaseModel):
    """A detector threshold set at the (1 - alpha) quantile of its statistic on reference windows.

    ``leave_out`` is True when every bootstrap window was compared with the reference minus that
    window (independent samples); False when the reference was too small and windows were drawn
    with replacement from the whole of it (thresholds then run low: more false alarms).
    """

    detector: str
    window_size: int
    threshold: float
    alpha: float
    n_boot: int
    leave_out: bool
    null_quantiles: dict[str, float] = Field(default_factory=dict)
