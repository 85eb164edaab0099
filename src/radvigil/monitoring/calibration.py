"""Detector thresholds calibrated on the reference to a target false-alarm rate per window.

Each of ``n_boot`` rounds draws a window of ``window_size`` rows from the reference and compares
it with the *rest* of the reference, so window and reference are independent as they will be in
service; the threshold is the (1 - alpha) quantile of the statistic over the rounds. When the
reference holds fewer than twice ``window_size`` rows, windows are drawn with replacement and
compared with the whole reference; overlap makes the statistics small, so the threshold runs low
and a :class:`~radvigil.errors.RadvigilWarning` says so. When the reference knows which rows share
a patient (``groups``), a window takes one image of each of N patients and the rest keeps none
of their images: a patient's other image left in the rest makes a window look too familiar, and
thresholds too low (the NIH null alarmed 8-20 % of the time against a 5 % target with row-level
leave-out; 0-2 % by patient).

Detectors that compare a window with a performance figure estimated on the reference itself
(CBPE, ATC, importance-weighted accuracy: ``resample_reference``) also see the rest resampled
with replacement, by patient, in each round. Service compares every window with one fixed
estimate from a few hundred images (its accuracy, and the temperature fitted on those same
images), whose sampling error is an offset that leave-out rounds on the same sample cannot see,
so the false-alarm rate a site meets depends on its reference's luck: without the resampling
CBPE raised 7 % and importance-weighted accuracy 9 % false alarms at n = 25 on held-out
Kermany patients against a 5 % target, with it 3.5 % and 1 % (bench/drift_power.py).
"""

from __future__ import annotations

import warnings

import numpy as np

from radvigil.errors import ConfigError, RadvigilWarning
from radvigil.monitoring.detectors import Detector, Skipped
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.result import Calibration


def calibrate(
    detector: Detector,
    profile: ReferenceProfile,
    window_size: int,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> Calibration:
    """Threshold of ``detector`` with false-alarm rate ``alpha`` on reference-like windows.

    Args:
        detector: The detector to calibrate (its statistic only is computed).
        profile: The reference profile; its reference rows supply the windows.
        window_size: Rows per window, as the monitor will cut them.
        n_boot: Reference windows drawn.
        alpha: Target false-alarm rate per window.
        seed: Seed of the draws.

    Returns:
        The calibration, to store with :meth:`ReferenceProfile.with_calibrations`.

    Raises:
        ConfigError: When the arguments are out of range, the detector cannot run on
            reference windows (e.g. no labels for a label-based detector), or its statistic
            does not vary over them (its default threshold is then the only sensible one).
    """
    reference = profile.reference
    n = len(reference)
    # patient codes 0..k-1, computed once for every draw below
    codes = (
        None if reference.groups is None else np.unique(reference.groups, return_inverse=True)[1]
    )
    units = n if codes is None else int(codes.max()) + 1
    if window_size < 2 or n_boot < 1 or not 0 < alpha < 1 or n < 4:
        raise ConfigError(
            f"cannot calibrate with window_size={window_size}, n_boot={n_boot}, alpha={alpha} "
            f"on {n} reference rows"
        )
    leave_out = units >= 2 * window_size
    if not leave_out:
        warnings.warn(
            f"reference of {units} {'rows' if codes is None else 'patients'} is too "
            f"small to leave out windows of {window_size}; "
            f"the {detector.name!r} threshold will raise more false alarms than {alpha:.0%}",
            RadvigilWarning,
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        if leave_out:
            held, window_rows = _held_out(codes, n, window_size, rng)
            kept = _resampled(codes, ~held, rng) if detector.resample_reference else ~held
            rest = profile.with_reference(reference.subset(kept))
            window = reference.subset(window_rows)
        else:
            rest, window = profile, reference.subset(rng.integers(0, n, window_size))
        out = detector.measure(rest, window, rng=rng, null=False, context={})
        if isinstance(out, Skipped):
            raise ConfigError(f"cannot calibrate detector {detector.name!r}: {out.reason}")
        values.append(out.statistic)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or np.ptp(finite) == 0:
        raise ConfigError(
            f"detector {detector.name!r} gave no varying statistic on reference windows "
            f"(e.g. a single category), so nothing can be calibrated"
        )
    return Calibration(
        detector=detector.name,
        window_size=window_size,
        threshold=float(np.quantile(finite, 1 - alpha, method="higher")),
        alpha=alpha,
        n_boot=n_boot,
        leave_out=leave_out,
        null_quantiles={
            f"q{int(q * 100):02d}": float(np.quantile(finite, q)) for q in (0.5, 0.9, 0.95, 0.99)
        },
    )


def _held_out(
    codes: np.ndarray | None, n: int, window_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows left out of the rest (a mask) and the window's rows (indices, ``window_size``).

    Without patient codes (0..k-1 per row) both are the same random rows. With them the window
    is one random row of each of ``window_size`` random patients, as a stream of new patients
    brings them, and all of those patients' rows are left out of the rest.
    """
    held = np.zeros(n, dtype=bool)
    if codes is None:
        rows = rng.choice(n, window_size, replace=False)
        held[rows] = True
        return held, np.sort(rows)
    chosen = rng.choice(int(codes.max()) + 1, window_size, replace=False)
    held = np.isin(codes, chosen)
    # a random permutation, then the first row of each chosen patient in it
    shuffled = rng.permutation(np.flatnonzero(held))
    _, first = np.unique(codes[shuffled], return_index=True)
    return held, np.sort(shuffled[first])


def _resampled(codes: np.ndarray | None, kept: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a bootstrap resample of the ``kept`` rows, whole patients when known."""
    rows = np.flatnonzero(kept)
    if codes is None:
        return rng.choice(rows, len(rows), replace=True)
    order = rows[np.argsort(codes[rows], kind="stable")]
    patients, first = np.unique(codes[order], return_index=True)
    by_patient = np.split(order, first[1:])
    drawn = rng.integers(0, len(patients), len(patients))
    return np.concatenate([by_patient[i] for i in drawn])
