"""Run the drift monitors on what the service logged, store the results, raise and clear alerts.

:func:`run_monitors` is what the service's schedule, ``POST /v1/monitoring/run`` and
``radvigil monitor run`` call. Each call evaluates only windows that are complete and not yet
stored (overall and per group, e.g. per site), so it can run as often as wanted; the store's
unique key keeps two runners from storing one window twice. Windows start where the last stored
window of their group ended; a group seen for the first time starts from the earliest place
any group is still open (its older rows were already covered by the overall windows).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from radvigil.errors import DataError, InputError
from radvigil.loop.late_labels import (
    LABELLED,
    at_served_threshold,
    label_counts,
    labelled_monitor,
    rejudge,
    span_end,
    windows_to_rejudge,
)
from radvigil.loop.monitor_windows import (
    group_key,
    in_group,
    slug,
    to_alert,
    to_reports,
    to_results,
    window_data,
    window_label,
)
from radvigil.monitoring import (
    Monitor,
    MonitorConfig,
    PendingRule,
    ReferenceProfile,
    Window,
    WindowReport,
    acknowledge,
    resolve,
    time_windows,
)
from radvigil.monitoring.evidently_report import write_evidently_report
from radvigil.store import (
    AlertCreate,
    AlertPublic,
    AlertStore,
    AuditLog,
    Database,
    FeedbackStore,
    MonitorResultPublic,
    MonitorResultStore,
    PredictionRecord,
    PredictionStore,
)
from radvigil.store.monitor_results import OVERALL, WindowKind
from radvigil.store.schemas import utcnow

log = logging.getLogger(__name__)
MAX_WINDOWS = 20  # a long backlog is evaluated from its newest windows
MIN_GROUPS = 10  # read budget for groups not seen yet (e.g. the first run's sites)
WEBHOOK_TIMEOUT_S = 5.0
ACTOR = "monitor"


@dataclass(frozen=True)
class MonitoringStores:
    """The repositories the runner reads predictions and labels from and writes results to."""

    predictions: PredictionStore
    feedback: FeedbackStore
    results: MonitorResultStore
    alerts: AlertStore

    @classmethod
    def from_db(cls, db: Database, audit: AuditLog | None = None) -> MonitoringStores:
        """All four on one database; alert changes are audited in ``audit`` (default: its log)."""
        return cls(
            PredictionStore(db),
            FeedbackStore(db),
            MonitorResultStore(db),
            AlertStore(db, audit or AuditLog(db)),
        )


class MonitoringRun(BaseModel):
    """What one run evaluated and changed."""

    model_name: str
    model_version: str
    window_kind: WindowKind
    windows: list[WindowReport] = Field(default_factory=list)
    result_ids: list[list[int]] = Field(
        default_factory=list, description="Stored result ids of each window, detector order."
    )
    relabelled: list[WindowReport] = Field(
        default_factory=list,
        description="Stored windows whose labelled detectors ran again as labels arrived.",
    )
    opened: list[AlertPublic] = Field(default_factory=list)
    resolved: list[AlertPublic] = Field(default_factory=list)
    pending: list[PendingRule] = Field(
        default_factory=list, description="Streak rules flagged on too few windows to fire yet."
    )


@dataclass(frozen=True)
class _Cut:
    window: Window
    start: datetime
    end: datetime


def run_monitors(
    stores: MonitoringStores,
    profile: ReferenceProfile,
    model_name: str,
    model_version: str,
    config: MonitorConfig | None = None,
    now: datetime | None = None,
    *,
    kind: WindowKind = "count",
    reports_dir: Path | None = None,
    webhook: str | None = None,
    max_windows: int = MAX_WINDOWS,
    seed: int = 0,
    thresholds: Mapping[str, float] | None = None,
) -> MonitoringRun:
    """Evaluate the new complete windows of one model version's champion-served predictions.

    Args:
        stores: Where predictions and labels are read and results and alerts written.
        profile: The model version's reference profile.
        model_name: Registered model name.
        model_version: The version whose predictions are monitored.
        config: Windows, detectors and alert rules (built-in defaults when None).
        now: Predictions made before this time are considered (default: now).
        kind: ``count`` windows of ``windows.size`` predictions, or ``time`` windows of
            ``windows.freq`` that have ended by ``now``.
        reports_dir: Write an Evidently HTML report per new window here (None: no reports).
        webhook: POST newly opened alerts to this URL as JSON (failures are logged).
        max_windows: Evaluate at most this many (the newest) new windows per group.
        seed: Seed of the permutation and bootstrap detectors.
        thresholds: The version's operating thresholds: the labelled detectors decide at
            them (argmax when None).

    Returns:
        The new window reports with their stored ids, and the alerts opened and resolved.
    """
    config = at_served_threshold(config or MonitorConfig(), profile.class_names, thresholds)
    now = now or utcnow()
    monitor = Monitor(profile, config)
    cursors = stores.results.cursors(model_name, model_version, kind)
    since = _read_from(stores, config, model_name, model_version, kind, cursors, now, max_windows)
    records = stores.predictions.list(
        since=since,
        until=now,
        model_name=model_name,
        model_version=model_version,
        served_by="champion",
        limit=None,
    )
    labels = stores.feedback.latest_labels(model_version=model_version, since=since)
    run = MonitoringRun(model_name=model_name, model_version=model_version, window_kind=kind)
    cuts = _cut(records, profile, labels, config, kind, cursors, now, max_windows)
    for cut in sorted(cuts, key=lambda c: (c.end, group_key(c.window.group))):
        report = monitor.run(cut.window, seed=seed)
        rows = to_results(
            report,
            model_name=model_name,
            model_version=model_version,
            kind=kind,
            start=cut.start,
            end=cut.end,
        )
        label_counts(rows, int(cut.window.data.labelled_mask().sum()))
        stored = stores.results.add_window(rows)
        if not stored:
            continue  # another runner stored this window first
        run.windows.append(report)
        run.result_ids.append([r.id for r in stored])
        if reports_dir is not None:
            _write_report(stores, profile, cut.window, stored, reports_dir)
    _rejudge_labelled(stores, profile, config, run, now, seed, max_windows)
    if run.windows or run.relabelled:
        _update_alerts(stores, monitor, run)
    if webhook and run.opened:
        post_webhook(webhook, run.opened)
    return run


def _read_from(
    stores: MonitoringStores,
    config: MonitorConfig,
    model_name: str,
    model_version: str,
    kind: WindowKind,
    cursors: dict[str, datetime],
    now: datetime,
    max_windows: int,
) -> datetime | None:
    """Where a run starts reading: the oldest open group's cursor, but never further back than
    the newest ``max_windows`` windows of every group could reach.

    Only windows not evaluated yet are read, so a run costs what is new. A backlog (a first
    run over a long history, or a group quiet for months) is capped: count windows read at most
    ``max_windows`` windows of predictions per group (overall and each known group value), time
    windows at most ``max_windows + 1`` periods; older windows would be skipped anyway.
    """
    since = min(cursors.values()) if OVERALL in cursors else None
    if kind == "time":
        floor = now - (max_windows + 1) * pd.Timedelta(config.windows.freq).to_pytimedelta()
        return floor if since is None else max(since, floor)
    by = config.windows.group_by
    groups = len(cursors) - (OVERALL in cursors) if by else 0
    budget = max_windows * config.windows.size * (1 + max(groups, MIN_GROUPS if by else 0))
    floor = stores.predictions.start_of_newest(
        budget,
        since=since,
        until=now,
        model_name=model_name,
        model_version=model_version,
        served_by="champion",
    )
    return since if floor is None else floor


def _cut(
    records: list[PredictionRecord],
    profile: ReferenceProfile,
    labels: dict[str, str],
    config: MonitorConfig,
    kind: WindowKind,
    cursors: dict[str, datetime],
    now: datetime,
    max_windows: int,
) -> list[_Cut]:
    """The complete windows, overall and per group, that start after their group's cursor."""
    by = config.windows.group_by
    groups: dict[str | None, list[int]] = {None: list(range(len(records)))}
    if by in ("site", "view_position"):
        known = profile.value_counts.get(by, {})
        for i, record in enumerate(records):
            value = config.canonical(by, getattr(record, by), known)  # aliases share a group
            if value is not None:
                groups.setdefault(f"{by}={value}", []).append(i)
    cuts = []
    for group, positions in groups.items():
        cursor = cursors.get(group_key(group))
        fresh = [records[i] for i in positions if _after(records[i].created_at, cursor, kind)]
        data = window_data(fresh, profile, labels)
        group_by = by if group and data.metadata is not None and by in data.metadata else None
        if kind == "count":
            size = config.windows.size
            spans = [
                (np.arange(s, s + size), fresh[s].created_at, fresh[s + size - 1].created_at)
                for s in range(0, len(fresh) - size + 1, size)
            ]
        elif not fresh:
            spans = []
        else:
            spans = [
                (w.positions, _utc(w.start), _utc(w.end))
                for w in time_windows(data, config.windows.freq, min_size=config.windows.min_size)
                if _utc(w.end) <= now
            ]
        for positions_, start, end in spans[-max_windows:]:
            window = Window(
                window_label(start, end),
                data.subset(positions_),
                group,
                start,
                end,
                positions_,
                group_by,
            )
            cuts.append(_Cut(window, start, end))
    return cuts


def _rejudge_labelled(
    stores: MonitoringStores,
    profile: ReferenceProfile,
    config: MonitorConfig,
    run: MonitoringRun,
    now: datetime,
    seed: int,
    max_windows: int,
) -> None:
    """Run the labelled detectors again on recent stored windows that got enough new labels."""
    monitor = labelled_monitor(config, profile)
    if monitor is None:
        return
    stored = [
        row
        for name in LABELLED
        if name in config.detectors
        for row in stores.results.list(
            model_name=run.model_name,
            model_version=run.model_version,
            window_kind=run.window_kind,
            detector=name,
            limit=max_windows * 16,
        )
    ]
    if not stored:
        return
    since = min(row.window_start for row in stored)
    # only labelled keys to count each stored window's labels: the look-back spans weeks of
    # predictions at a busy site, and loading every key cost time and memory with the history
    labelled = stores.predictions.keys(
        since=since,
        until=now,
        model_name=run.model_name,
        model_version=run.model_version,
        served_by="champion",
        labelled_only=True,
    )
    labels = stores.feedback.latest_labels(model_version=run.model_version, since=since)
    for row, _ in windows_to_rejudge(stored, labelled, labels, config):
        span = stores.predictions.keys(  # every prediction of the window, labelled or not
            since=row.window_start,
            until=span_end(row),
            model_name=run.model_name,
            model_version=run.model_version,
            served_by="champion",
        )
        members = [key for key in span if in_group(key, row.group)]
        found = stores.predictions.get_many([m.id for m in members])
        records = [found[m.id] for m in members if m.id in found]
        report, rows = rejudge(monitor, profile, row, records, labels, seed)
        if stores.results.replace(rows):
            run.relabelled.append(report)


def _update_alerts(stores: MonitoringStores, monitor: Monitor, run: MonitoringRun) -> None:
    """Replay the rules over every new window in order: open what fires, resolve what is clean."""
    new = {(w.group, w.window) for w in [*run.windows, *run.relabelled]}
    per_group: dict[str | None, int] = {}
    for group, _ in new:
        per_group[group] = per_group.get(group, 0) + 1
    depth = max((rule.consecutive for rule in monitor.config.alerts), default=1)
    depth += max(per_group.values(), default=1) - 1
    rows = stores.results.recent(run.model_name, run.model_version, run.window_kind, depth)
    ids = {(r.group, window_label(r.window_start, r.window_end), r.detector): r.id for r in rows}
    active = stores.alerts.list(
        model_name=run.model_name, model_version=run.model_version, active=True, limit=None
    )
    stored_active = {(a.rule, a.group): a for a in active}
    replay = monitor.alerts(to_reports(rows), [to_alert(a) for a in active], new)
    for event in replay.events:
        alert, group = event.alert, group_key(event.alert.group)
        if event.action == "open":
            opened = stores.alerts.open(
                AlertCreate(
                    model_name=run.model_name,
                    model_version=run.model_version,
                    rule=alert.rule,
                    detector=alert.detector,
                    group=group,
                    severity=alert.severity,
                    message=alert.message,
                    statistic=alert.statistic,
                    threshold=alert.threshold,
                    first_window=ids.get((group, alert.windows[0], alert.detector)),
                    last_window=ids.get((group, alert.windows[-1], alert.detector)),
                ),
                actor=ACTOR,
            )
            if opened is not None:
                run.opened.append(opened)
                stored_active[(alert.rule, group)] = opened
            continue
        stored = stored_active.pop((alert.rule, group), None)
        if stored is not None:
            run.resolved.append(
                stores.alerts.transition(
                    stored.id,
                    "resolved",
                    expected=stored.state,
                    actor=ACTOR,
                    reason=f"{alert.resolution} (up to window {event.window})",
                )
            )
    run.pending = replay.pending
    for pending in replay.pending:
        log.info("alert rule %s pending: %s", pending.rule, pending.message)


def _report_file(reports_dir: Path, first: MonitorResultPublic) -> Path:
    name = f"{slug(first.model_name)}-v{slug(first.model_version)}-{first.window_kind}-"
    return reports_dir / f"{name}{slug(first.group)}-{first.id}.html"


def _write_report(
    stores: MonitoringStores,
    profile: ReferenceProfile,
    window: Window,
    stored: Sequence[MonitorResultPublic],
    reports_dir: Path,
) -> Path | None:
    first = stored[0]
    path = _report_file(reports_dir, first)
    try:
        write_evidently_report(profile, window.data, path)
    except (DataError, OSError) as exc:
        log.warning("no Evidently report for window %s: %s", window.label, exc)
        return None
    stores.results.save_report(first.id, path.read_bytes())
    stores.results.set_report_path([r.id for r in stored], str(path))
    return path


def stored_report(stores: MonitoringStores, result_id: int, reports_dir: Path) -> Path | None:
    """The report of ``result_id``'s window if any replica wrote it: a local file, or the
    database's copy written to ``reports_dir``; None when it was never written."""
    first = stores.results.window_of(result_id)[0]
    if first.report_path and Path(first.report_path).is_file():
        return Path(first.report_path)
    html = stores.results.load_report(first.id)
    if html is None:
        return None
    path = _report_file(reports_dir, first)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(html)
    partial.replace(path)
    return path


def ensure_report(
    stores: MonitoringStores, profile: ReferenceProfile, result_id: int, reports_dir: Path
) -> Path:
    """The Evidently report of the window of ``result_id``, written now if no replica has."""
    found = stored_report(stores, result_id, reports_dir)
    if found is not None:
        return found
    rows = stores.results.window_of(result_id)
    first = rows[0]
    inclusive = timedelta(microseconds=1) if first.window_kind == "count" else timedelta()
    records = [
        r
        for r in stores.predictions.list(
            since=first.window_start,
            until=first.window_end + inclusive,
            model_version=first.model_version,
            served_by="champion",
            limit=None,
        )
        if r.model_name == first.model_name and in_group(r, first.group)
    ]
    if not records:
        raise DataError(f"the predictions of monitor result {result_id}'s window are gone")
    data = window_data(records, profile, {})
    window = Window(window_label(first.window_start, first.window_end), data)
    path = _write_report(stores, profile, window, rows, reports_dir)
    if path is None:
        raise DataError(f"Evidently could not write the report of monitor result {result_id}")
    return path


def post_webhook(url: str, alerts: Sequence[AlertPublic]) -> bool:
    """POST new alerts as ``{"source": "radvigil", "alerts": [...]}``; False (logged) on failure."""
    payload = {"source": "radvigil", "alerts": [a.model_dump(mode="json") for a in alerts]}
    try:
        response = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.error("alert webhook %s failed: %s", httpx.URL(url).host, exc)
        return False
    return True


def acknowledge_alert(alerts: AlertStore, alert_id: int, actor: str) -> AlertPublic:
    """Acknowledge an open alert (the monitoring state machine decides; the store records)."""
    stored = alerts.get(alert_id)
    acknowledge(to_alert(stored), actor)
    return alerts.transition(alert_id, "acknowledged", expected=stored.state, actor=actor)


def resolve_alert(alerts: AlertStore, alert_id: int, actor: str, reason: str) -> AlertPublic:
    """Resolve an open or acknowledged alert, saying why."""
    if not reason.strip():
        raise InputError("resolving an alert needs a reason")
    stored = alerts.get(alert_id)
    resolve(to_alert(stored), actor, reason)
    return alerts.transition(
        alert_id, "resolved", expected=stored.state, actor=actor, reason=reason
    )


def latest_results(
    results: MonitorResultStore, model_name: str, model_version: str, kind: WindowKind = "count"
) -> list[MonitorResultPublic]:
    """The rows of the newest window of every group."""
    return results.recent(model_name, model_version, kind, 1)


def drift_streaks(
    db: Database, model_name: str, model_version: str, *, depth: int = 50
) -> dict[str, int]:
    """Per detector, how many of the newest overall count windows in a row flagged drift."""
    rows = MonitorResultStore(db).list(
        model_name=model_name,
        model_version=model_version,
        window_kind="count",
        group=OVERALL,
        limit=depth * 64,  # more than enough rows for ``depth`` windows of every detector
    )
    streaks: dict[str, int] = {}
    broken: set[str] = set()
    seen: dict[str, int] = {}
    for row in rows:  # newest window first
        seen[row.detector] = seen.get(row.detector, 0) + 1
        if row.detector in broken or seen[row.detector] > depth:
            continue
        if row.drift:
            streaks[row.detector] = streaks.get(row.detector, 0) + 1
        else:
            streaks.setdefault(row.detector, 0)
            broken.add(row.detector)
    return streaks


def _after(created: datetime, cursor: datetime | None, kind: WindowKind) -> bool:
    """Whether a prediction is past the last window: a count window ends at its last
    prediction, a time window at the (exclusive) end of its period."""
    if cursor is None:
        return True
    return created > cursor if kind == "count" else created >= cursor


def _utc(value: datetime | None) -> datetime:
    if value is None:
        raise InputError("time windows need start and end times")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
