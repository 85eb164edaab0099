"""Per-case drifters: single predictions that fall outside what the model version was checked on.

A case is a drifter when its embedding's Mahalanobis OOD score passes the profile's threshold
(the reference's cross-fitted 99th percentile by default), when image quality control raised a
flag, or when a per-case guard (:mod:`radvigil.monitoring.guards`) fired. The flag is per case,
for review; window detectors still count drifters like any other case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from radvigil.monitoring.guards import GuardFlag
from radvigil.monitoring.profile import ReferenceProfile


def ood_score(profile: ReferenceProfile, embedding: np.ndarray) -> float:
    """OOD score of one raw (D,) or reduced (k,) embedding under the profile."""
    return float(profile.ood.score(profile.projection.reduce(embedding))[0])


def is_drifter(
    ood: float | None,
    quality_flags: Mapping[str, bool] | Iterable[str],
    profile: ReferenceProfile,
    *,
    counted_flags: Iterable[str] | None = None,
    guards: Iterable[GuardFlag] = (),
) -> tuple[bool, list[str]]:
    """Whether one case is a drifter, and every reason why.

    Args:
        ood: The case's OOD score (:func:`ood_score`); None when no embedding exists.
        quality_flags: Raised QC flags, as names or a ``{name: raised}`` mapping.
        profile: The model version's reference profile.
        counted_flags: Flags that make a drifter; None counts every raised flag.
        guards: Per-case guards the case raised (:func:`~radvigil.monitoring.check_guards`).

    Returns:
        (drifter, reasons), reasons readable by a reviewer.
    """
    reasons = []
    if ood is not None and np.isfinite(ood) and ood > profile.ood.threshold:
        reasons.append(
            f"embedding OOD score {ood:.2f} is above the reference "
            f"{profile.ood.quantile:.0%} quantile {profile.ood.threshold:.2f}"
        )
    if isinstance(quality_flags, Mapping):
        raised = [name for name, on in quality_flags.items() if on]
    else:
        raised = list(quality_flags)
    allowed = None if counted_flags is None else set(counted_flags)
    reasons += [f"quality flag: {f}" for f in raised if allowed is None or f in allowed]
    reasons += [f"guard {g.guard}: {g.reason}" for g in guards]
    return bool(reasons), reasons
