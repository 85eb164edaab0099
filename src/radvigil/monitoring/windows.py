"""Windows of predictions: the rows a monitor compares with the reference, and how to cut them.

:class:`WindowData` holds columns of the same N predictions (reduced embeddings, probabilities,
labels where known, image statistics, metadata, OOD scores, times). Count windows take
consecutive runs of N predictions; time windows take calendar periods (daily by default); both
can be cut overall and per group (e.g. per site) of a metadata column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from radvigil.errors import InputError
from radvigil.monitoring.features import as_categorical, check_probs

UNLABELLED = -1


@dataclass(frozen=True)
class WindowData:
    """Aligned per-prediction columns; any may be absent, detectors skip what they lack.

    ``labels`` are class indices with ``-1`` for predictions not (yet) labelled; ``embeddings``
    are the PCA-reduced vectors of the model version's reference profile. ``groups`` are integer
    codes of rows that share a patient (never the patient ids): the reference keeps them so that
    cross-fitting and calibration hold out whole patients, as service will meet them.
    """

    embeddings: np.ndarray | None = None
    probs: np.ndarray | None = None
    labels: np.ndarray | None = None
    stats: pd.DataFrame | None = None
    metadata: pd.DataFrame | None = None
    ood_scores: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        cast = {
            "embeddings": lambda v: np.asarray(v, dtype=np.float32),
            "probs": check_probs,
            "labels": lambda v: np.asarray(v, dtype=np.int64),
            "stats": lambda v: v.reset_index(drop=True).astype(np.float64),
            "metadata": lambda v: as_categorical(v.reset_index(drop=True)),
            "ood_scores": lambda v: np.asarray(v, dtype=np.float64),
            "timestamps": lambda v: np.asarray(pd.to_datetime(v), dtype="datetime64[ns]"),
            "groups": lambda v: np.asarray(v, dtype=np.int64),
        }
        sizes = {}
        for name, convert in cast.items():
            value = getattr(self, name)
            if value is not None:
                try:
                    value = convert(value)
                except (ValueError, TypeError) as exc:
                    raise InputError(f"window column {name!r} is malformed: {exc}") from exc
                object.__setattr__(self, name, value)
                sizes[name] = len(value)
        if len(set(sizes.values())) > 1:
            raise InputError(f"window columns differ in length: {sizes}")
        if self.embeddings is not None and self.embeddings.ndim != 2:
            raise InputError(f"embeddings must be 2-D (N, k), got {self.embeddings.shape}")

    def __len__(self) -> int:
        for name in ("embeddings", "probs", "labels", "stats", "metadata", "ood_scores"):
            value = getattr(self, name)
            if value is not None:
                return len(value)
        return 0 if self.timestamps is None else len(self.timestamps)

    def subset(self, index: np.ndarray) -> WindowData:
        """The rows at ``index`` (integer positions or a boolean mask), in that order.

        The columns are already validated and converted, so the copy skips ``__post_init__``:
        bootstrap calibration takes hundreds of subsets per detector and window size.
        """
        idx = np.arange(len(self))[np.asarray(index)]
        rows = object.__new__(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, pd.DataFrame) and f.name == "stats":
                # float64 throughout (see __post_init__): numpy indexing, a third of iloc's time
                value = pd.DataFrame(value.to_numpy()[idx], columns=value.columns)
            elif isinstance(value, pd.DataFrame):
                value = value.iloc[idx].reset_index(drop=True)
            elif value is not None:
                value = value[idx]
            object.__setattr__(rows, f.name, value)
        return rows

    def labelled_mask(self) -> np.ndarray:
        """True where a label is known."""
        if self.labels is None:
            return np.zeros(len(self), dtype=bool)
        return self.labels != UNLABELLED


@dataclass(frozen=True)
class Window:
    """One window: its name, the group it covers (``site=B``, cut by ``group_by``), its time
    span and its rows (``positions`` into the data it was cut from)."""

    label: str
    data: WindowData
    group: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    group_by: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)


def count_windows(
    data: WindowData,
    size: int,
    *,
    by: str | None = None,
    overall: bool = True,
    partial: bool = False,
) -> list[Window]:
    """Consecutive runs of ``size`` predictions in row order, overall and/or per ``by`` group.

    Args:
        data: Predictions in time order.
        size: Predictions per window.
        by: Metadata column to cut per group (e.g. ``site``); None for overall only.
        overall: Also cut windows over all rows when ``by`` is given.
        partial: Keep a last window shorter than ``size``.

    Returns:
        Windows labelled ``rows a-b`` (positions into ``data``), grouped as ``by=value``.
    """
    if size < 2:
        raise InputError(f"window size must be at least 2, got {size}")
    windows = []
    for group, positions in _groups(data, by, overall):
        for start in range(0, len(positions), size):
            chunk = positions[start : start + size]
            if len(chunk) == size or (partial and len(chunk) >= 2):
                label = f"rows {chunk[0]}-{chunk[-1]}"
                windows.append(
                    Window(
                        label,
                        data.subset(chunk),
                        group,
                        positions=chunk,
                        group_by=by if group else None,
                    )
                )
    return windows


def last_window(data: WindowData, size: int) -> Window:
    """The latest ``size`` predictions (all of them when fewer)."""
    positions = np.arange(max(len(data) - size, 0), len(data))
    return Window(f"last {len(positions)}", data.subset(positions), positions=positions)


def time_windows(
    data: WindowData,
    freq: str = "1D",
    *,
    by: str | None = None,
    overall: bool = True,
    min_size: int = 2,
) -> list[Window]:
    """Calendar windows (pandas frequency, e.g. ``1D``, ``7D``, ``1h``) of at least ``min_size``."""
    if data.timestamps is None:
        raise InputError("time windows need prediction timestamps")
    try:
        periods = pd.DatetimeIndex(data.timestamps).floor(freq)
        step = pd.tseries.frequencies.to_offset(freq)
    except ValueError as exc:
        raise InputError(f"invalid window frequency {freq!r}: {exc}") from exc
    windows = []
    for group, positions in _groups(data, by, overall):
        for start in sorted(set(periods[positions])):
            chunk = positions[periods[positions] == start]
            if len(chunk) >= min_size:
                end = start + step
                label = f"{start.isoformat()}/{freq}"
                windows.append(
                    Window(
                        label,
                        data.subset(chunk),
                        group,
                        start.to_pydatetime(),
                        end.to_pydatetime(),
                        chunk,
                        by if group else None,
                    )
                )
    return windows


def _groups(
    data: WindowData, by: str | None, overall: bool
) -> Iterator[tuple[str | None, np.ndarray]]:
    everything = np.arange(len(data))
    if by is None or overall:
        yield None, everything
    if by is None:
        return
    if data.metadata is None or by not in data.metadata.columns:
        columns = [] if data.metadata is None else list(data.metadata.columns)
        raise InputError(f"cannot group windows by {by!r}: metadata columns are {columns}")
    values = data.metadata[by].to_numpy()
    for value in sorted(set(values)):
        yield f"{by}={value}", everything[values == value]
