"""The detector contract and the registry of detectors by string key.

A detector measures one window against a :class:`ReferenceProfile` and returns a statistic that
grows with drift, plus the threshold its own null distribution implies (``default_threshold``).
:meth:`Detector.run` then picks the threshold in order: an explicit override, a calibration
stored in the profile for the nearest window size, the default; and returns a
:class:`DetectorResult`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from radvigil.errors import ConfigError
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import DetectorResult, ThresholdSource
from radvigil.monitoring.windows import WindowData


class DetectorParams(BaseModel):
    """Base of every detector's parameters: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Measurement:
    """What a detector computed on one window, before a threshold is chosen."""

    statistic: float
    default_threshold: float
    n_reference: int
    p_value: float | None = None
    effect_size: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    veto: str | None = None
    null_centre: float = 0.0  # the statistic's typical value without drift (AUC: 0.5)


@dataclass(frozen=True)
class Skipped:
    """Why a detector could not run on a window (e.g. no labels yet)."""

    reason: str


class Detector(ABC):
    """One drift test; subclasses define ``Params`` and :meth:`measure`."""

    Params: ClassVar[type[DetectorParams]]
    uses_context: ClassVar[bool] = False
    calibrated: ClassVar[bool] = True  # False: a fixed-scale verdict, not a null statistic
    # True: the statistic compares the window with a performance figure estimated on the
    # reference itself, so calibration resamples the reference (see calibration.py)
    resample_reference: ClassVar[bool] = False

    def __init__(self, name: str, params: DetectorParams) -> None:
        self.name = name
        self.params = params

    @abstractmethod
    def measure(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        rng: np.random.Generator,
        null: bool,
        context: Mapping[str, DetectorResult],
    ) -> Measurement | Skipped:
        """Compare ``window`` (already prepared by the profile) with the profile's reference.

        ``null=False`` asks for the statistic alone (calibration), skipping permutations and
        bootstraps; ``context`` holds results of detectors already run on the same window.
        """

    def run(
        self,
        profile: ReferenceProfile,
        window: WindowData,
        *,
        threshold: float | None = None,
        context: Mapping[str, DetectorResult] | None = None,
        seed: int = 0,
    ) -> DetectorResult:
        """Measure ``window`` and decide drift at the override, calibrated or default threshold."""
        prepared = profile.prepare(window)
        rng = np.random.default_rng(seed)
        out = self.measure(profile, prepared, rng=rng, null=True, context=context or {})
        if isinstance(out, Skipped):
            return DetectorResult(name=self.name, n_window=len(window), skipped=out.reason)
        source: ThresholdSource = "override"
        details = dict(out.details)
        if threshold is None:
            calibration = profile.calibration_for(self.name, len(window))
            if calibration is not None:
                threshold, source = calibration.threshold, "calibrated"
                details["calibration_window_size"] = calibration.window_size
            else:
                threshold, source = out.default_threshold, "default"
        details["null_centre"] = out.null_centre
        if threshold - out.null_centre > 0:
            details["times_threshold"] = (out.statistic - out.null_centre) / (
                threshold - out.null_centre
            )
        return DetectorResult(
            name=self.name,
            statistic=jsonable(out.statistic),
            p_value=jsonable(out.p_value),
            threshold=jsonable(threshold),
            threshold_source=source,
            drift=bool(out.statistic > threshold) and out.veto is None,
            effect_size=jsonable(out.effect_size),
            n_reference=out.n_reference,
            n_window=len(window),
            details=jsonable(details),
            vetoed=out.veto,
        )


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: its class and the defaults its key sets on top of the class's."""

    name: str
    cls: type[Detector]
    defaults: dict[str, Any]

    def params(self, **overrides: Any) -> DetectorParams:
        try:
            return self.cls.Params(**{**self.defaults, **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"detector {self.name!r}: {where}: {first['msg']}") from exc


_REGISTRY: dict[str, DetectorSpec] = {}


def register(name: str, **defaults: Any) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator: make a detector available under ``name`` with key-specific defaults."""

    def decorate(cls: type[Detector]) -> type[Detector]:
        _REGISTRY[name] = DetectorSpec(name, cls, defaults)
        return cls

    return decorate


def detector_names() -> list[str]:
    """Keys of all registered detectors."""
    return sorted(_REGISTRY)


def make_detector(name: str, **params: Any) -> Detector:
    """Build the detector registered as ``name`` with ``params`` over its defaults."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(f"unknown detector {name!r}; valid detectors: {detector_names()}")
    return spec.cls(name, spec.params(**params))


def describe_detectors() -> dict[str, dict[str, Any]]:
    """Each key's one-line summary and full default parameters (for docs and the CLI)."""
    out = {}
    for name in detector_names():
        spec = _REGISTRY[name]
        doc = (spec.cls.__doc__ or "").strip().splitlines()
        out[name] = {"summary": doc[0] if doc else "", "defaults": spec.params().model_dump()}
    return out


def jsonable(value: Any) -> Any:
    """Numpy scalars and arrays (also nested in dicts and lists) as plain Python values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
