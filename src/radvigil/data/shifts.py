"""Controlled image shifts: named, parameterised, seeded, composable transforms of uint8 pixels.

Each shift in :data:`SHIFTS` maps ``(pixels, rng) -> pixels`` for 2-D uint8 arrays and keeps the
shape and dtype. Parameters have physical meanings and an *identity* value that leaves the
image unchanged; ``strength`` interpolates linearly from identity (0) to the documented default
(1), and beyond, so benchmarks can sweep one number per shift::

    shift = compose(get_shift("gamma", gamma=1.4), get_shift("gaussian_noise", strength=0.5))
    shifted = apply_shift(pixels, shift, seed=7)
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image as PILImage
from scipy.ndimage import gaussian_filter

from radvigil.errors import ConfigError, InputError


class ShiftFn(Protocol):
    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class Param:
    """One shift parameter: default (a clearly visible shift), identity value and valid range."""

    default: float
    identity: float
    low: float
    high: float
    help: str


@dataclass(frozen=True)
class ShiftSpec:
    """A registered shift: its pixel function and its parameters."""

    name: str
    fn: Callable[..., np.ndarray]
    params: dict[str, Param]
    help: str


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _brightness(pixels: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    return _to_uint8(pixels * factor)


def _contrast(pixels: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    mean = float(pixels.mean())
    return _to_uint8(mean + (pixels - mean) * factor)


def _gamma(pixels: np.ndarray, rng: np.random.Generator, gamma: float) -> np.ndarray:
    return _to_uint8(255.0 * (pixels / 255.0) ** gamma)


def _gaussian_noise(pixels: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return _to_uint8(pixels + rng.normal(0.0, sigma, pixels.shape))


def _poisson_noise(pixels: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    # Below 1e-4 the noise is under 1e-4 grey levels and the photon count would overflow numpy's
    # Poisson sampler, so such levels are the identity.
    if level < 1e-4:
        return pixels.copy()
    peak = 1.0 / level**2  # photon count at white: relative noise at white is ``level``
    return _to_uint8(rng.poisson(pixels / 255.0 * peak) / peak * 255.0)


def _blur(pixels: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    if sigma == 0:
        return pixels.copy()
    return _to_uint8(gaussian_filter(pixels.astype(np.float64), sigma, mode="nearest"))


def _sharpen(pixels: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    if amount == 0:
        return pixels.copy()
    x = pixels.astype(np.float64)
    return _to_uint8(x + amount * (x - gaussian_filter(x, 1.0, mode="nearest")))


def _speckle(pixels: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return _to_uint8(pixels * (1.0 + rng.normal(0.0, sigma, pixels.shape)))


def _resolution(pixels: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    image = PILImage.fromarray(pixels)
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    down = image.resize(small, PILImage.Resampling.BOX)
    return np.asarray(down.resize(image.size, PILImage.Resampling.BILINEAR))


def _jpeg(pixels: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    if quality >= 100:
        return pixels.copy()
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=round(quality))
    return np.asarray(PILImage.open(buffer).convert("L"))


def _rotation(pixels: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    rotated = PILImage.fromarray(pixels).rotate(
        degrees, resample=PILImage.Resampling.BILINEAR, fillcolor=0
    )
    return np.asarray(rotated)


def _zoom(pixels: np.ndarray, rng: np.random.Generator, zoom: float) -> np.ndarray:
    image = PILImage.fromarray(pixels)
    w, h = image.size
    cw, ch = w / zoom, h / zoom
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    if zoom >= 1:
        return np.asarray(image.resize((w, h), PILImage.Resampling.BILINEAR, box=box))
    inner = image.resize((max(1, round(w * zoom)), max(1, round(h * zoom))))
    canvas = PILImage.new("L", (w, h), 0)
    canvas.paste(inner, ((w - inner.width) // 2, (h - inner.height) // 2))
    return np.asarray(canvas)


SHIFTS: dict[str, ShiftSpec] = {
    s.name: s
    for s in (
        ShiftSpec(
            "brightness",
            _brightness,
            {"factor": Param(1.2, 1.0, 0.0, 10.0, "multiply pixel values")},
            "Global exposure change.",
        ),
        ShiftSpec(
            "contrast",
            _contrast,
            {"factor": Param(0.7, 1.0, 0.0, 10.0, "scale deviations from the image mean")},
            "Window width change.",
        ),
        ShiftSpec(
            "gamma",
            _gamma,
            {"gamma": Param(1.5, 1.0, 0.05, 20.0, "out = 255 (in/255)^gamma")},
            "Different detector response / LUT.",
        ),
        ShiftSpec(
            "gaussian_noise",
            _gaussian_noise,
            {"sigma": Param(8.0, 0.0, 0.0, 255.0, "noise std in grey levels")},
            "Electronic noise.",
        ),
        ShiftSpec(
            "poisson_noise",
            _poisson_noise,
            {"level": Param(0.05, 0.0, 0.0, 1.0, "relative quantum noise at white (1/sqrt dose)")},
            "Lower dose (quantum mottle).",
        ),
        ShiftSpec(
            "blur",
            _blur,
            {"sigma": Param(1.5, 0.0, 0.0, 50.0, "Gaussian blur std in pixels")},
            "Motion or focal-spot blur.",
        ),
        ShiftSpec(
            "sharpen",
            _sharpen,
            {"amount": Param(1.0, 0.0, 0.0, 10.0, "unsharp mask: out = in + amount (in - blur_1)")},
            "A vendor's edge enhancement.",
        ),
        ShiftSpec(
            "speckle",
            _speckle,
            {
                "sigma": Param(
                    0.06, 0.0, 0.0, 1.0, "multiplicative noise: out = in (1 + N(0, sigma))"
                )
            },
            "Signal-dependent (multiplicative) noise.",
        ),
        ShiftSpec(
            "resolution",
            _resolution,
            {"scale": Param(0.5, 1.0, 0.01, 1.0, "downsample by this factor, then upsample back")},
            "Lower-resolution detector or a resized export.",
        ),
        ShiftSpec(
            "jpeg",
            _jpeg,
            {"quality": Param(30.0, 100.0, 1.0, 100.0, "JPEG quality; 100 = no re-compression")},
            "Lossy re-compression in a PACS export.",
        ),
        ShiftSpec(
            "rotation",
            _rotation,
            {"degrees": Param(10.0, 0.0, -180.0, 180.0, "counter-clockwise, black corners")},
            "Patient positioning.",
        ),
        ShiftSpec(
            "zoom",
            _zoom,
            {"zoom": Param(1.2, 1.0, 0.2, 5.0, ">1 crops the centre; <1 shrinks, black border")},
            "Different collimation or field of view.",
        ),
    )
}


@dataclass(frozen=True)
class Shift:
    """A shift with its parameters bound: call it as ``shift(pixels, rng)``."""

    name: str
    params: dict[str, float] = field(default_factory=dict)

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return get_spec(self.name).fn(pixels, rng, **self.params)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": self.name, "params": dict(self.params)}]


@dataclass(frozen=True)
class Pipeline:
    """Shifts applied in order, sharing one random generator."""

    shifts: tuple[Shift, ...]

    def __call__(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for shift in self.shifts:
            pixels = shift(pixels, rng)
        return pixels

    def describe(self) -> list[dict[str, Any]]:
        return [step for shift in self.shifts for step in shift.describe()]


# The standard processing suite (docs/robustness.md): what PACS exports, vendors' processing and
# detectors do to a film, each a registered shift at a mild and a strong strength. The robustness
# gate judges versions under it (radvigil.evaluation.criteria) and the ``processing``
# augmentation trains on it up to the mild strengths (radvigil.model.augment).
PROCESSING_SUITE: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "jpeg": ({"quality": 60}, {"quality": 20}),
    "sharpen": ({"amount": 0.5}, {"amount": 2.0}),
    "blur": ({"sigma": 0.7}, {"sigma": 1.5}),
    "gaussian_noise": ({"sigma": 3}, {"sigma": 10}),
    "speckle": ({"sigma": 0.03}, {"sigma": 0.12}),
    "gamma": ({"gamma": 1.15}, {"gamma": 1.6}),
    "rotation": ({"degrees": 3}, {"degrees": 10}),
    "resolution": ({"scale": 0.75}, {"scale": 0.4}),
}


def mild_suite() -> list[Shift]:
    """Every shift of :data:`PROCESSING_SUITE` at its mild strength, in the suite's order."""
    return [get_shift(name, **mild) for name, (mild, _) in PROCESSING_SUITE.items()]


def get_spec(name: str) -> ShiftSpec:
    """The registered shift ``name``; the error lists the valid names."""
    try:
        return SHIFTS[name]
    except KeyError:
        raise ConfigError(f"unknown shift {name!r}; valid shifts: {sorted(SHIFTS)}") from None


def get_shift(name: str, *, strength: float | None = None, **params: float) -> Shift:
    """Bind a shift's parameters: defaults, scaled by ``strength``, overridden by ``params``."""
    spec = get_spec(name)
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ConfigError(
            f"shift {name!r} has no parameter(s) {unknown}; parameters: {sorted(spec.params)}"
        )
    if strength is not None and strength < 0:
        raise ConfigError(f"shift {name!r}: strength must be >= 0, got {strength}")
    bound: dict[str, float] = {}
    for key, param in spec.params.items():
        if key in params:
            value = float(params[key])
            if not param.low <= value <= param.high:
                raise ConfigError(
                    f"shift {name!r}: {key}={value} outside [{param.low}, {param.high}]"
                )
        elif strength is not None:
            value = param.identity + strength * (param.default - param.identity)
            value = min(max(value, param.low), param.high)
        else:
            value = param.default
        bound[key] = value
    return Shift(name, bound)


def compose(*shifts: Shift | Pipeline) -> Pipeline:
    """One pipeline applying ``shifts`` left to right."""
    flat: list[Shift] = []
    for item in shifts:
        flat.extend(item.shifts if isinstance(item, Pipeline) else (item,))
    return Pipeline(tuple(flat))


def apply_shift(
    pixels: np.ndarray, shift: ShiftFn, seed: int | Sequence[int] | None = 0
) -> np.ndarray:
    """Apply ``shift`` with a generator seeded by ``seed``; checks input and output arrays."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise InputError("shifts take 2-D uint8 pixel arrays")
    out = shift(pixels, np.random.default_rng(seed))
    if out.shape != pixels.shape or out.dtype != np.uint8:
        raise InputError(f"shift changed the array to {out.dtype} {out.shape}")
    return out


def parse_shift(text: str) -> Shift:
    """Parse ``NAME[:key=value,...]`` (``strength`` is accepted as a key), as on the CLI."""
    name, _, rest = text.strip().partition(":")
    values: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, _, raw = item.partition("=")
        try:
            values[key.strip()] = float(raw)
        except ValueError:
            raise ConfigError(f"shift {text!r}: expected key=number, got {item!r}") from None
    strength = values.pop("strength", None)
    return get_shift(name.strip(), strength=strength, **values)
