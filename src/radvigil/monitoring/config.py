"""The monitoring configuration: profile, windows, calibration, detectors and alert rules.

Loaded from YAML (``configs/monitoring.yaml`` ships the defaults, which equal
``MonitorConfig()``); every detector key and parameter is checked against the live registry.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radvigil.errors import ConfigError
from radvigil.monitoring.alerts import AlertRule
from radvigil.monitoring.detectors import detector_names, make_detector
from radvigil.monitoring.features import MISSING


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileConfig(_Section):
    n_components: int = Field(16, ge=1, description="PCA dimensions of the embedding space.")
    max_reference: int = Field(2000, ge=10, description="Reference rows kept in the profile.")
    ood_quantile: float = Field(0.99, gt=0.5, lt=1, description="Drifter cut on the OOD score.")


class WindowConfig(_Section):
    size: int = Field(200, ge=2, description="Predictions per count window (last N).")
    freq: str = Field("1D", description="Pandas frequency of time windows (daily by default).")
    group_by: str | None = Field("site", description="Metadata column for per-group windows.")
    min_size: int = Field(30, ge=2, description="Smallest time window that is monitored.")


class CalibrationConfig(_Section):
    window_sizes: list[int] = Field(default_factory=lambda: [25, 50, 100, 200], min_length=1)
    n_boot: int = Field(400, ge=10, description="Reference windows drawn per threshold.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Target false-alarm rate per window.")
    seed: int = 0


class NameMap(_Section):
    """How one metadata column's values from clients map to the reference's spelling."""

    aliases: dict[str, str] = Field(
        default_factory=dict, description="Client value -> reference value (exact match)."
    )
    missing: list[str] = Field(
        default_factory=lambda: ["", "unknown", "none", "n/a"],
        description="Values meaning 'not sent' (case-insensitive); treated as absent.",
    )
    unknown: Literal["keep", "missing"] = Field(
        "keep",
        description="Values the reference never saw: keep (a new category: drift) or missing.",
    )

    def canonical(self, value: str | None, known: Collection[str] = ()) -> str | None:
        """The reference spelling of ``value``; None when it means absent."""
        if value is None or value == MISSING or value.strip().lower() in self._missing:
            return None
        value = self.aliases.get(value, value)
        if self.unknown == "missing" and known and value not in known:
            return None
        return value

    @property
    def _missing(self) -> set[str]:
        return {m.strip().lower() for m in self.missing}


class DrifterConfig(_Section):
    quality_flags: list[str] | None = Field(
        None, description="Quality flags that make a case a drifter; None = any flag."
    )


def _default_detectors() -> dict[str, dict[str, Any]]:
    return {name: {} for name in DEFAULT_DETECTORS}


DEFAULT_DETECTORS = (
    "image_stats",
    "metadata",
    "mmd",
    "domain_classifier",
    "ood_rate",
    "bbsd",
    "label_shift",
    "cbpe",
    "atc",
    "iw_accuracy",
    "estimate_check",
    "performance",
    "concept",
    "harm",
)


DEFAULT_ALERTS = (
    AlertRule(detector="image_stats", consecutive=2, severity="warning"),
    AlertRule(detector="mmd", consecutive=2, severity="warning"),
    AlertRule(detector="ood_rate", consecutive=1, severity="warning"),
    AlertRule(detector="label_shift", consecutive=3, severity="info"),
    AlertRule(detector="cbpe", consecutive=2, severity="critical"),
    AlertRule(
        detector="estimate_check", name="performance-unverified", threshold=0.5, severity="warning"
    ),
    AlertRule(
        detector="estimate_check", name="performance-degraded", threshold=1.5, severity="critical"
    ),
    AlertRule(detector="performance", consecutive=1, severity="critical"),
    AlertRule(detector="concept", consecutive=2, severity="critical"),
)


class MonitorConfig(_Section):
    """Everything a monitor run needs besides the reference profile and the data."""

    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    detectors: dict[str, dict[str, Any]] = Field(default_factory=_default_detectors)
    alerts: list[AlertRule] = Field(default_factory=lambda: list(DEFAULT_ALERTS))
    drifters: DrifterConfig = Field(default_factory=DrifterConfig)
    names: dict[str, NameMap] = Field(
        default_factory=dict, description="Metadata column -> aliases and missing-value words."
    )

    def canonical(self, column: str, value: str | None, known: Collection[str] = ()) -> str | None:
        """``value`` of metadata ``column`` in the reference's spelling (None: absent)."""
        return self.names.get(column, NameMap()).canonical(value, known)

    @model_validator(mode="after")
    def _check_keys(self) -> MonitorConfig:
        for name, params in self.detectors.items():
            make_detector(name, **(params or {}))
        unknown = sorted({r.detector for r in self.alerts} - set(self.detectors))
        if unknown:
            raise ValueError(
                f"alert rules name detectors {unknown} that are not configured; "
                f"configured: {sorted(self.detectors)}, registered: {detector_names()}"
            )
        return self


def load_monitor_config(path: str | Path | None = None) -> MonitorConfig:
    """Read a monitoring YAML file; without a path, the built-in defaults."""
    if path is None:
        return MonitorConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read monitoring config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"monitoring config {path} is not valid YAML: {exc}") from exc
    return monitor_config_from_dict(data, source=str(path))


def monitor_config_from_dict(data: Any, source: str = "<dict>") -> MonitorConfig:
    """Validate a monitoring config mapping, naming the first problem."""
    try:
        return MonitorConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid monitoring config {source}: {where}: {first['msg']}") from exc
