"""Monitor results and alerts as the dashboard shows them: timelines, window tables, alerts.

Reads the service's monitoring stores (``state.monitoring.stores``) for the champion's version,
one detector and group at a time and the newest :data:`TIMELINE_WINDOWS` windows, so a page
costs the same after a year of windows; all chart building is left to
:mod:`radvigil.dashboard.charts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from radvigil.dashboard import charts
from radvigil.dashboard.session import PREFIX
from radvigil.errors import RadvigilError
from radvigil.monitoring.config import DEFAULT_DETECTORS
from radvigil.service.state import ServiceState
from radvigil.store import AlertPublic, MonitorResultPublic
from radvigil.store.monitor_results import WindowKind

OVERALL = "all"
# Windows a timeline shows: the newest, about a month of 5,000 predictions a day in windows
# of 300; older ones are in GET /v1/monitoring/results.
TIMELINE_WINDOWS = 500
RANKING_WINDOWS = 20  # windows looked through for the newest one that was not skipped
# Detector order on the page: the defaults' order (inputs, then outputs, then performance).
ORDER = DEFAULT_DETECTORS


@dataclass
class AlertsView:
    items: list[AlertPublic] = field(default_factory=list)
    total: int = 0
    error: str | None = None


@dataclass
class MonitorView:
    detectors: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    detector: str | None = None
    group: str = OVERALL
    chart: dict[str, Any] | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[AlertPublic] = field(default_factory=list)
    ranking: list[dict[str, Any]] = field(default_factory=list)
    harm: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class PerformanceView:
    estimate_chart: dict[str, Any] | None = None
    labelled_chart: dict[str, Any] | None = None
    note: str | None = None
    error: str | None = None


def _labels(rows: list[MonitorResultPublic]) -> list[str]:
    """Window axis labels: their number (oldest is #1) and when each ended."""
    return [f"#{i} {charts.time_label(r.window_end, 1)}" for i, r in enumerate(rows, start=1)]


def open_alerts(state: ServiceState, limit: int = 10) -> AlertsView:
    """Active (open or acknowledged) alerts of the served model, newest first."""
    try:
        found = state.monitoring.stores.alerts.list(
            model_name=state.settings.model_name, active=True, limit=None
        )
    except RadvigilError as exc:
        return AlertsView(error=f"alerts could not be read: {exc.message}")
    return AlertsView(items=found[:limit], total=len(found))


def champion_kind(state: ServiceState) -> WindowKind | None:
    """The champion's window kind on the pages: count windows when it has any, else time
    windows; None when it has no results (or no champion)."""
    champion = state.models.champion
    if champion is None:
        return None
    results = state.monitoring.stores.results
    for kind in ("count", "time"):
        found = results.list(
            model_name=champion.name, model_version=champion.version, window_kind=kind, limit=1
        )
        if found:
            return kind
    return None


def champion_results(
    state: ServiceState, kind: WindowKind, *, detector: str, group: str, windows: int
) -> list[MonitorResultPublic]:
    """The champion's newest ``windows`` results of one detector and group, oldest first:
    an index range, whatever the history holds."""
    champion = state.models.champion
    if champion is None:
        return []
    rows = state.monitoring.stores.results.list(
        model_name=champion.name,
        model_version=champion.version,
        window_kind=kind,
        detector=detector,
        group=group,
        limit=windows,
    )
    return rows[::-1]


def newest_windows(
    state: ServiceState, kind: WindowKind, group: str, rows: int
) -> list[MonitorResultPublic]:
    """The champion's newest ``rows`` results of one group, every detector."""
    champion = state.models.champion
    if champion is None:
        return []
    return state.monitoring.stores.results.list(
        model_name=champion.name,
        model_version=champion.version,
        window_kind=kind,
        group=group,
        limit=rows,
    )


def _rank(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def timeline(
    rows: list[MonitorResultPublic], alerts: list[AlertPublic], detector: str
) -> dict[str, Any]:
    """Statistic per window, its threshold (dashed), flagged windows and alert windows."""
    fired = {a.last_window for a in alerts} | {a.first_window for a in alerts}
    stats = [r.statistic for r in rows]
    threshold = charts.series("threshold", [r.threshold for r in rows], charts.GREY, dashed=True)
    if len(rows) == 1:  # one window: a line needs two points, so draw the threshold as a tick
        threshold |= {"pointStyle": "line", "pointRadius": 14, "borderWidth": 2}
    return charts.line(
        _labels(rows),
        [
            charts.series(f"{detector} statistic", stats, charts.BLUE),
            threshold,
            charts.markers(
                "window flagged",
                [r.statistic if r.drift and r.id not in fired else None for r in rows],
                charts.ORANGE,
            )
            | {"pointStyle": "circle", "pointRadius": 5},
            charts.markers(
                "alert raised", [r.statistic if r.id in fired else None for r in rows], charts.RED
            ),
        ],
        y_title="statistic (grows with drift)",
    )


def _times(row: MonitorResultPublic) -> float | None:
    value = row.details.get("times_threshold")
    return float(value) if isinstance(value, int | float) else None


def ranking(rows: list[MonitorResultPublic], group: str) -> list[dict[str, Any]]:
    """Every detector on the newest window of ``group``, furthest beyond its threshold first.

    Ranked by how many times the threshold's distance from the null the statistic is (the
    p-value based statistics saturate on strong shifts; this ratio and the effect size do not).
    """
    mine = [r for r in rows if r.group == group and not r.skipped]
    if not mine:
        return []
    last = max(r.window_end for r in mine)
    newest = [r for r in mine if r.window_end == last]
    out = [
        {
            "detector": r.detector,
            "times_threshold": _times(r),
            "effect_size": r.effect_size,
            "statistic": r.statistic,
            "threshold": r.threshold,
            "drift": r.drift,
        }
        for r in newest
    ]
    return sorted(out, key=lambda x: -(x["times_threshold"] or float("-inf")))


def harm_reading(rows: list[MonitorResultPublic], group: str) -> dict[str, Any] | None:
    """The ``harm`` detector on the newest window of ``group``: its summary, the estimated
    changes at the served threshold, what moved most and the perturbation that explains it."""
    mine = [r for r in rows if r.detector == "harm" and r.group == group and not r.skipped]
    if not mine:
        return None
    newest = max(mine, key=lambda r: r.window_end)
    details = newest.details
    return {
        "summary": details.get("summary"),
        "change": details.get("change", {}),
        "threshold": details.get("decision_threshold"),
        "moved_most": details.get("moved_most", {}),
        "explained_by": details.get("explained_by"),
        "drift": newest.drift,
    }


def monitor_view(state: ServiceState, *, detector: str | None, group: str | None) -> MonitorView:
    """The timeline of one detector on one group (defaults: the newest alert's, else first)."""
    champion = state.models.champion
    try:
        kind = champion_kind(state)
        if champion is None or kind is None:
            return MonitorView()
        pairs = state.monitoring.stores.results.dimensions(champion.name, champion.version, kind)
        alerts = state.monitoring.stores.alerts.list(
            model_name=champion.name, model_version=champion.version, limit=None
        )
    except RadvigilError as exc:
        return MonitorView(error=f"monitor results could not be read: {exc.message}")
    if not pairs:
        return MonitorView()
    detectors = sorted({d for d, _ in pairs}, key=_rank)
    groups = sorted({g for _, g in pairs}, key=lambda g: (g != OVERALL, g))
    active = [a for a in alerts if a.active]
    if detector not in detectors:
        detector = active[0].detector if active else detectors[0]
    if group not in groups:  # the overall timeline is the longest; else the alert's group
        overall = (detector, OVERALL) in pairs
        alerted = [a.group for a in active if a.detector == detector]
        group = OVERALL if overall or not alerted else alerted[0]
    try:
        picked = champion_results(
            state, kind, detector=detector, group=group, windows=TIMELINE_WINDOWS
        )
        recent = newest_windows(state, kind, group, RANKING_WINDOWS * len(detectors))
    except RadvigilError as exc:
        return MonitorView(error=f"monitor results could not be read: {exc.message}")
    mine = [a for a in alerts if a.detector == detector and a.group == group]
    windows = [
        {
            "id": r.id,
            "start": r.window_start,
            "end": r.window_end,
            "size": r.n,
            "statistic": r.statistic,
            "threshold": r.threshold,
            "drift": r.drift,
            "times_threshold": _times(r),
            "effect_size": r.effect_size,
            "skipped": r.skipped,
            "report_url": f"{PREFIX}/drift/reports/{r.id}",
        }
        for r in reversed(picked)
    ]
    return MonitorView(
        detectors=detectors,
        groups=groups,
        detector=detector,
        group=group,
        chart=timeline(picked, mine, detector) if picked else None,
        windows=windows,
        alerts=mine,
        ranking=ranking(recent, group),
        harm=harm_reading(recent, group),
    )


def _get(details: dict[str, Any], *path: str) -> float | None:
    value: Any = details
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def performance_view(state: ServiceState) -> PerformanceView:
    """Per overall window: CBPE and ATC accuracy estimates beside the realised and reference
    accuracy, and the performance detector's sensitivity/specificity with their intervals."""
    try:
        kind = champion_kind(state)
        by = (
            {
                detector: champion_results(
                    state, kind, detector=detector, group=OVERALL, windows=TIMELINE_WINDOWS
                )
                for detector in ("cbpe", "atc", "performance")
            }
            if kind is not None
            else {}
        )
    except RadvigilError as exc:
        return PerformanceView(error=f"monitor results could not be read: {exc.message}")
    view = PerformanceView()
    cbpe, atc = by.get("cbpe", []), by.get("atc", [])
    if cbpe or atc:
        base = cbpe or atc
        atc_by_end = {r.window_end: r for r in atc}
        realised = [
            _get(r.details, "realised", "accuracy")
            if r.detector == "cbpe"
            else _get(r.details, "realised_accuracy")
            for r in base
        ]
        view.estimate_chart = charts.line(
            _labels(base),
            [
                charts.series(
                    "CBPE estimate",
                    [_get(r.details, "estimated", "accuracy") for r in cbpe],
                    charts.BLUE,
                ),
                charts.series(
                    "ATC estimate",
                    [
                        _get(atc_by_end[r.window_end].details, "estimated_accuracy")
                        if r.window_end in atc_by_end
                        else None
                        for r in base
                    ],
                    charts.PURPLE,
                ),
                charts.series("realised (labelled cases)", realised, charts.GREEN),
                charts.series(
                    "reference",
                    [
                        _get(r.details, "reference", "accuracy")
                        or _get(r.details, "reference_accuracy")
                        for r in base
                    ],
                    charts.GREY,
                    dashed=True,
                ),
            ],
            y_title="accuracy",
            y_range=(0, 1),
        )
    perf = [r for r in by.get("performance", []) if not r.skipped]
    skipped = [r for r in by.get("performance", []) if r.skipped]
    if skipped and not perf:
        view.note = (
            f"The labelled-performance detector skipped all {len(skipped)} window(s): "
            f"{skipped[-1].skipped}."
        )
    if perf:
        datasets = []
        for metric, color in (("sensitivity", charts.RED), ("specificity", charts.BLUE)):
            ci = [r.details.get(metric, {}).get("ci") or [None, None] for r in perf]
            datasets += charts.band(
                f"{metric} 95 % interval", [c[0] for c in ci], [c[1] for c in ci], color
            )
            datasets.append(
                charts.series(metric, [_get(r.details, metric, "value") for r in perf], color)
            )
            datasets.append(
                charts.series(
                    f"{metric}, reference",
                    [_get(r.details, metric, "reference") for r in perf],
                    color,
                    dashed=True,
                )
            )
        view.labelled_chart = charts.line(_labels(perf), datasets, y_title="rate", y_range=(0, 1))
    return view
