"""Late labels reach the labelled monitors: windows are re-judged when clinicians' labels arrive.

A window is cut and judged once, usually before anyone has labelled its cases, so the
``performance`` and ``concept`` detectors first report "skipped: 0 labelled cases". Each
monitoring run therefore looks back at the stored windows: where more of a window's cases are
labelled now than when its labelled detectors last ran, and enough to judge, those detectors run
again on the same window and their stored rows are replaced. Both judge a case as positive at
the version's served operating threshold, as the service decided it, not by argmax.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from radvigil.loop.monitor_windows import (
    group_key,
    in_group,
    to_results,
    window_data,
    window_label,
)
from radvigil.monitoring import Monitor, MonitorConfig, ReferenceProfile, Window, WindowReport
from radvigil.monitoring.detectors import make_detector
from radvigil.store import MonitorResultCreate, MonitorResultPublic, PredictionRecord
from radvigil.store.monitor_results import OVERALL

LABELLED = ("performance", "concept")
AT_THRESHOLD = (*LABELLED, "harm")  # detectors that decide at the served threshold
LABELS_KEY = "labels_at_run"  # stored in a labelled row's details: labelled cases it saw


def at_served_threshold(
    config: MonitorConfig, classes: Sequence[str], thresholds: Mapping[str, float] | None
) -> MonitorConfig:
    """``config`` with the labelled detectors and ``harm`` deciding at the served threshold of
    the task's one finding (settings given in the monitoring YAML win)."""
    findings = [c for c in classes if c in (thresholds or {})]
    if thresholds is None or len(findings) != 1:
        return config
    finding = findings[0]
    detectors = dict(config.detectors)
    for name in AT_THRESHOLD:
        if name in detectors:
            params = {
                "positive_class": list(classes).index(finding),
                "decision_threshold": float(thresholds[finding]),
                **(detectors[name] or {}),
            }
            make_detector(name, **params)  # validated like the YAML's own settings
            detectors[name] = params
    return config.model_copy(update={"detectors": detectors})


def label_counts(rows: Sequence[MonitorResultCreate], labelled: int) -> None:
    """Note on each labelled detector's row how many labelled cases it was judged on."""
    for row in rows:
        if row.detector in LABELLED:
            row.details[LABELS_KEY] = labelled


def stale(row: MonitorResultPublic, labelled_now: int, config: MonitorConfig) -> bool:
    """Whether a labelled row should run again: more labels than it saw, and enough to judge."""
    params = make_detector(row.detector, **(config.detectors.get(row.detector) or {})).params
    seen = int(row.details.get(LABELS_KEY, 0) or 0)
    return labelled_now > seen and labelled_now >= getattr(params, "min_labels", 1)


class Placed(Protocol):
    """What places a prediction in a stored window (a full record or a light key)."""

    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


P = TypeVar("P", bound=Placed)


def window_records(
    records: Sequence[P], times: Sequence[datetime], row: MonitorResultPublic
) -> list[P]:
    """The stored window's predictions among ``records`` (its span and group).

    ``records`` are sorted by time and ``times`` are their ``created_at``: the span is found by
    bisection, so placing a few hundred stored windows among a look-back of tens of thousands of
    predictions costs the windows' members, not windows x predictions.
    """
    first = bisect_left(times, row.window_start)
    last = bisect_left(times, span_end(row))
    return [r for r in records[first:last] if in_group(r, row.group)]


def span_end(row: MonitorResultPublic) -> datetime:
    """Where a stored window's span ends, exclusive: a count window ends at its last
    prediction's time, which belongs to it."""
    inclusive = timedelta(microseconds=1) if row.window_kind == "count" else timedelta()
    return row.window_end + inclusive


def rejudge(
    monitor: Monitor,
    profile: ReferenceProfile,
    row: MonitorResultPublic,
    records: Sequence[PredictionRecord],
    labels: Mapping[str, str],
    seed: int,
) -> tuple[WindowReport, list[MonitorResultCreate]]:
    """The labelled detectors' new rows for one stored window (with the inputs they read)."""
    data = window_data(records, profile, labels)
    by = monitor.config.windows.group_by
    group = None if row.group == OVERALL else row.group
    group_by = by if group and data.metadata is not None and by in data.metadata else None
    window = Window(
        window_label(row.window_start, row.window_end),
        data,
        group=group,
        start=row.window_start,
        end=row.window_end,
        group_by=group_by,
    )
    report = monitor.run(window, seed=seed)
    rows = [
        r
        for r in to_results(
            report,
            model_name=row.model_name,
            model_version=row.model_version,
            kind=row.window_kind,
            start=row.window_start,
            end=row.window_end,
        )
        if r.detector in LABELLED
    ]
    label_counts(rows, int(data.labelled_mask().sum()))
    return report, rows


def labelled_monitor(config: MonitorConfig, profile: ReferenceProfile) -> Monitor | None:
    """A monitor of the labelled detectors and the input detectors ``concept`` reads."""
    names = [n for n in LABELLED if n in config.detectors]
    if not names:
        return None
    needed = set(names)
    if "concept" in names:
        inputs = make_detector("concept", **(config.detectors["concept"] or {})).params
        needed |= set(getattr(inputs, "input_detectors", ()))
    detectors = {k: v for k, v in config.detectors.items() if k in needed}
    return Monitor(profile, config.model_copy(update={"detectors": detectors, "alerts": []}))


def windows_to_rejudge(
    stored: Sequence[MonitorResultPublic],
    records: Sequence[P],
    labels: Mapping[str, str],
    config: MonitorConfig,
) -> list[tuple[MonitorResultPublic, list[P]]]:
    """Stored windows (one labelled row each) whose labels grew enough to judge again, each
    with its members among ``records`` (the run passes only the labelled predictions' keys:
    enough to count labels, and it loads a chosen window's every key itself)."""
    seen: set[tuple[str, datetime, datetime]] = set()
    out = []
    records = sorted(records, key=lambda r: r.created_at)
    times = [r.created_at for r in records]
    for row in stored:
        key = (group_key(row.group), row.window_start, row.window_end)
        if row.detector not in LABELLED or key in seen:
            continue
        members = window_records(records, times, row)
        labelled = sum(r.id in labels for r in members)
        if stale(row, labelled, config):
            seen.add(key)
            out.append((row, members))
    return out
