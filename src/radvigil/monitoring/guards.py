"""Per-case guards: explicit, cheap checks for the input failures that hurt a chest model most.

Each guard reads a few image statistics of one case (see
:func:`~radvigil.monitoring.features.layout_stats`) and compares them with the band the model
version's reference images span: the reference's 1st-99th percentiles widened by ``margin``
times their distance from the median. A value outside the band raises the guard's flag with a
reason a reviewer can read. Guards do not depend on the OOD score, so a confidently wrong case
that the embedding calls "in distribution" is still flagged. Refusing a wrong body part or a
non-radiograph is the service's input contract, not a guard.

Guards (flag name: what it catches):

* ``inverted_polarity``: mediastinum darker than the lungs (a MONOCHROME1 image shown as
  MONOCHROME2, or an inverted export);
* ``field_of_view``: crop/zoom to the lungs, a shrunken or collimated field, or a rotated film
  (mediastinum contrast above the reference, periphery unlike it, black corners, flat edge
  bands, a tilted or turned spine);
* ``intensity_lut``: a strong LUT/gamma change, i.e. a tone curve (the median's place between p05
  and p95 outside the reference's range);
* ``noise``: more noise than any reference film (added electronic or multiplicative noise, a
  lower dose);
* ``sharpening``: more high-frequency detail than the reference (a vendor's edge enhancement);
* ``compression``: 8x8 block edges (lossy recompression in a PACS export).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

Side = Literal["low", "high"]


@dataclass(frozen=True)
class Check:
    """One statistic of one guard, flagged on one side of the reference band."""

    column: str
    side: Side
    what: str


@dataclass(frozen=True)
class Guard:
    name: str
    checks: tuple[Check, ...]


GUARDS: tuple[Guard, ...] = (
    Guard(
        "inverted_polarity",
        (Check("mediastinum_contrast", "low", "mediastinum darker than the lungs: inverted?"),),
    ),
    Guard(
        "field_of_view",
        (
            Check("mediastinum_contrast", "high", "lungs fill the frame: cropped or zoomed?"),
            Check("border_contrast", "high", "periphery as bright as the centre: cropped?"),
            Check("corner_fill", "high", "black corners: rotated or shrunken field?"),
            Check("edge_flat", "high", "flat bands at the edges: collimated?"),
            Check("tilt", "low", "spine tilted: rotated?"),
            Check("tilt", "high", "spine tilted: rotated?"),
            Check("axis_ratio", "low", "no vertical spine: turned by 90 degrees?"),
        ),
    ),
    Guard(
        "intensity_lut",
        (
            Check("midtone", "low", "mid-tones darker than any reference: LUT/gamma change?"),
            Check("midtone", "high", "mid-tones brighter than any reference: LUT/gamma change?"),
        ),
    ),
    Guard("noise", (Check("noise_sigma", "high", "noisier than any reference: added noise?"),)),
    # Only the high side: smoothing is milder for the model, and the low side flagged 2 % of
    # unprocessed bundled films.
    Guard(
        "sharpening",
        (Check("hf_ratio", "high", "more fine detail than any reference: sharpened?"),),
    ),
    Guard(
        "compression",
        (Check("blockiness", "high", "8x8 block edges: lossy recompression?"),),
    ),
)
GUARD_NAMES = tuple(g.name for g in GUARDS)


class GuardFlag(BaseModel):
    """A raised guard: which one, why, and the value against the reference band."""

    guard: str
    column: str
    value: float
    low: float
    high: float
    reason: str


# The least the upper edge of a processing statistic's band may be, from the reference median
# m. Bands of very clean reference films (the bundled ones are resized JPEGs with 0.5 grey
# levels of noise) are so narrow that the mild processing a hospital really does (the suite's
# mild strengths) would fall outside and route every study to review; these floors sit between
# the suite's mild and strong strengths on real films (measured in docs/robustness.md).
MIN_HIGH: dict[str, Callable[[float], float]] = {
    "noise_sigma": lambda m: math.hypot(m, 5.0),  # as if noise of 5 grey levels were added
    "hf_ratio": lambda m: 1.2 * m,  # 20 % more edge gain than the median reference film
    "blockiness": lambda m: 1.4 * m,  # block edges 40 % stronger than the median film's
}


def guard_bands(reference: pd.DataFrame, margin: float = 0.25) -> dict[str, tuple[float, float]]:
    """Per guarded column: the reference's 1st-99th percentile band, widened by ``margin``;
    the upper edge of a processing statistic is at least its :data:`MIN_HIGH` floor."""
    bands = {}
    for column in {c.column for g in GUARDS for c in g.checks}:
        if column not in reference:
            continue
        values = reference[column].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if values.size < 10:
            continue
        q01, q50, q99 = np.quantile(values, [0.01, 0.5, 0.99])
        high = q99 + margin * (q99 - q50)
        floor = MIN_HIGH.get(column)
        low = q01 - margin * (q50 - q01)
        bands[column] = (low, high if floor is None else max(high, floor(float(q50))))
    return bands


def check_guards(
    stats: Mapping[str, float], bands: Mapping[str, tuple[float, float]]
) -> list[GuardFlag]:
    """The guards one case raises (at most one flag per guard: its first failing check)."""
    flags = []
    for guard in GUARDS:
        for check in guard.checks:
            band, value = bands.get(check.column), stats.get(check.column)
            if band is None or value is None or not np.isfinite(value):
                continue
            low, high = band
            if (check.side == "low" and value < low) or (check.side == "high" and value > high):
                flags.append(
                    GuardFlag(
                        guard=guard.name,
                        column=check.column,
                        value=float(value),
                        low=float(low),
                        high=float(high),
                        reason=(
                            f"{check.what} ({check.column} {value:.3g} outside the reference "
                            f"band {low:.3g} to {high:.3g})"
                        ),
                    )
                )
                break
    return flags


def guard_table(stats: pd.DataFrame, bands: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """Per case (rows of ``stats``) and guard: raised or not; vectorised for windows/benchmarks."""
    out = pd.DataFrame(index=stats.index)
    for guard in GUARDS:
        raised = np.zeros(len(stats), dtype=bool)
        for check in guard.checks:
            if check.column not in bands or check.column not in stats:
                continue
            low, high = bands[check.column]
            values = stats[check.column].to_numpy(np.float64)
            raised |= values < low if check.side == "low" else values > high
        out[guard.name] = raised
    return out
