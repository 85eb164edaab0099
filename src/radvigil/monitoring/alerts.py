"""Alert rules and the alert life cycle, as pure functions over window reports.

A rule fires for a group (overall, or e.g. ``site=B``) at the window that completes a run of
``consecutive`` flagged windows of that group, optionally at its own threshold; every window of
a run is replayed in order, so no window's alert is lost, and streaks still short of their
length are reported as pending. An alert is
``open`` -> ``acknowledged`` -> ``resolved`` (or straight from open to resolved); persisting
the state is the store's job, deciding it is done here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from radvigil.errors import InputError
from radvigil.monitoring.result import DetectorResult, WindowReport

Severity = Literal["info", "warning", "critical"]


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


TRANSITIONS: dict[AlertState, frozenset[AlertState]] = {
    AlertState.OPEN: frozenset({AlertState.ACKNOWLEDGED, AlertState.RESOLVED}),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.RESOLVED}),
    AlertState.RESOLVED: frozenset(),
}


class AlertRule(BaseModel):
    """Raise an alert when ``detector`` flags ``consecutive`` windows of a group in a row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: str
    name: str | None = Field(None, description="Rule name; defaults to '<detector>-drift'.")
    threshold: float | None = Field(None, description="Override of the detector's threshold.")
    consecutive: int = Field(1, ge=1, description="Flagged windows in a row needed to fire.")
    severity: Severity = "warning"

    @property
    def key(self) -> str:
        return self.name or f"{self.detector}-drift"

    def flags(self, result: DetectorResult | None) -> bool:
        """Whether ``result`` counts as a flagged window under this rule."""
        if result is None or result.skipped or result.statistic is None:
            return False
        threshold = self.threshold if self.threshold is not None else result.threshold
        return threshold is not None and result.statistic > threshold and result.vetoed is None


class Alert(BaseModel):
    """One alert of one rule on one group, with its state and who moved it."""

    rule: str
    detector: str
    group: str | None
    severity: Severity
    state: AlertState = AlertState.OPEN
    windows: list[str]
    statistic: float | None
    threshold: float | None
    effect_size: float | None = None
    times_threshold: float | None = None
    message: str
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    changed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def active(self) -> bool:
        return self.state != AlertState.RESOLVED


class RuleEvent(BaseModel):
    """One step of a replay: ``alert`` opened or resolved at ``window`` of its group."""

    action: Literal["open", "resolve"]
    window: str
    alert: Alert


class PendingRule(BaseModel):
    """A streak rule whose detector flagged the latest windows of a group, too few to fire."""

    rule: str
    detector: str
    group: str | None
    streak: int
    needed: int
    available: int
    message: str


class RuleReplay(BaseModel):
    """What the rules decided over a run's windows, in window order."""

    events: list[RuleEvent] = Field(default_factory=list)
    pending: list[PendingRule] = Field(default_factory=list)

    @property
    def opened(self) -> list[Alert]:
        return [e.alert for e in self.events if e.action == "open"]

    @property
    def resolved(self) -> list[Alert]:
        return [e.alert for e in self.events if e.action == "resolve"]


def replay_rules(
    rules: Sequence[AlertRule],
    history: Sequence[WindowReport],
    active: Iterable[Alert] = (),
    new: Collection[tuple[str | None, str]] | None = None,
) -> RuleReplay:
    """Evaluate the rules at every new window of every group, oldest first.

    A rule opens an alert at the window that completes its streak of flagged windows (unless
    one is active for its group), and resolves an active alert at the window that completes as
    many clean windows in a row; so an alert raised by an early window of a run is opened even
    when later windows of the same run are clean (and then resolved by them).

    Args:
        rules: The alert rules.
        history: Window reports in time order (any mix of groups): the new windows and as
            many earlier ones as the longest streak needs.
        active: Alerts currently open or acknowledged (one per rule and group at most).
        new: ``(group, window)`` keys evaluated now; None evaluates every window of history.

    Returns:
        The open/resolve events in window order, and the streak rules still pending.
    """
    current = {(a.rule, a.group): a for a in active if a.active}
    replay = RuleReplay()
    for group, reports in _by_group(history).items():
        steps = [i for i, r in enumerate(reports) if new is None or (group, r.window) in new]
        for i in steps:
            for rule in rules:
                recent = reports[max(0, i + 1 - rule.consecutive) : i + 1]
                results = [r.result(rule.detector) for r in recent]
                key = (rule.key, group)
                full = len(recent) == rule.consecutive
                if key not in current and full and all(rule.flags(r) for r in results):
                    alert = _open(rule, group, recent, results[-1])  # type: ignore[arg-type]
                    current[key] = alert
                    replay.events.append(
                        RuleEvent(action="open", window=recent[-1].window, alert=alert)
                    )
                elif key in current and full and all(_clean(rule, r) for r in results):
                    done = resolve(
                        current.pop(key),
                        "monitor",
                        f"clean in {rule.consecutive} consecutive window(s)",
                    )
                    replay.events.append(
                        RuleEvent(action="resolve", window=recent[-1].window, alert=done)
                    )
        if steps:
            replay.pending += _pending(rules, group, reports, current)
    return replay


def _clean(rule: AlertRule, result: DetectorResult | None) -> bool:
    return result is not None and not result.skipped and not rule.flags(result)


def _open(
    rule: AlertRule, group: str | None, recent: list[WindowReport], last: DetectorResult
) -> Alert:
    """The alert of a rule whose streak ends at ``last`` (flagged, so it has a statistic)."""
    statistic = float(last.statistic if last.statistic is not None else "nan")
    threshold = rule.threshold if rule.threshold is not None else last.threshold
    times = exceedance(last, threshold)
    where = f" on {group}" if group else ""
    effect = "" if last.effect_size is None else f"; effect size {last.effect_size:.3g}"
    verdict = last.details.get("verdict")
    harm = recent[-1].result("harm")
    return Alert(
        rule=rule.key,
        detector=rule.detector,
        group=group,
        severity=rule.severity,
        windows=[r.window for r in recent],
        statistic=statistic,
        threshold=threshold,
        effect_size=last.effect_size,
        times_threshold=times,
        message=(
            f"{rule.detector} flagged drift{where} in {rule.consecutive} consecutive "
            f"window(s); last statistic {statistic:.4g} > threshold {threshold:.4g}"
            + ("" if times is None else f" ({times:.3g}x threshold)")
            + effect
            + (f"; verdict {verdict}: {last.details.get('why', '')}" if verdict else "")
            + harm_note(harm)
        ),
    )


def harm_note(harm: DetectorResult | None) -> str:
    """The ``harm`` detector's reading of the window, for an alert: what moved most, what it
    looks like and the estimated change at the served threshold ('' when it did not run)."""
    if harm is None or harm.skipped or "summary" not in harm.details:
        return ""
    moved = harm.details.get("moved_most", {})
    parts = []
    if "detector" in moved:
        d = moved["detector"]
        parts.append(f"detector {d['name']} ({d['times_threshold']:.3g}x threshold)")
    if "statistic" in moved:
        st = moved["statistic"]
        parts.append(f"image statistic {st['name']} ({st['reference_sds']:.3g} reference SDs)")
    most = f"; moved most: {', '.join(parts)}" if parts else ""
    return f"; harm: {harm.details['summary']}{most}"


def _pending(
    rules: Sequence[AlertRule],
    group: str | None,
    reports: list[WindowReport],
    current: dict[tuple[str, str | None], Alert],
) -> list[PendingRule]:
    """Rules flagged on the group's latest windows but short of their streak (and not active)."""
    out = []
    for rule in rules:
        if rule.consecutive < 2 or (rule.key, group) in current:
            continue
        streak = 0
        for report in reversed(reports):
            if not rule.flags(report.result(rule.detector)) or streak == rule.consecutive:
                break
            streak += 1
        if not 0 < streak < rule.consecutive:
            continue
        where = group or "all windows"
        short = (
            f"only {len(reports)} window(s) of {where} exist so far, so it cannot fire yet"
            if len(reports) < rule.consecutive
            else "it fires if the next window is flagged too"
            if streak == rule.consecutive - 1
            else f"{rule.consecutive - streak} more flagged window(s) are needed"
        )
        out.append(
            PendingRule(
                rule=rule.key,
                detector=rule.detector,
                group=group,
                streak=streak,
                needed=rule.consecutive,
                available=len(reports),
                message=(
                    f"{rule.detector} flagged the last {streak} window(s) of {where}; the rule "
                    f"needs {rule.consecutive} in a row: {short}"
                ),
            )
        )
    return out


def exceedance(result: DetectorResult, threshold: float | None = None) -> float | None:
    """How far beyond its threshold a statistic is, as a multiple of the threshold's distance
    from the detector's null centre (1 = at the threshold; 3 = three times as far)."""
    threshold = result.threshold if threshold is None else threshold
    centre = float(result.details.get("null_centre", 0.0) or 0.0)
    if result.statistic is None or threshold is None or threshold - centre <= 0:
        return None
    return (result.statistic - centre) / (threshold - centre)


def acknowledge(alert: Alert, actor: str) -> Alert:
    """An open alert acknowledged by ``actor``."""
    return _move(alert, AlertState.ACKNOWLEDGED, acknowledged_by=actor)


def resolve(alert: Alert, actor: str, reason: str) -> Alert:
    """An open or acknowledged alert resolved by ``actor`` for ``reason``."""
    return _move(alert, AlertState.RESOLVED, resolved_by=actor, resolution=reason)


def _move(alert: Alert, to: AlertState, **changes: str) -> Alert:
    if to not in TRANSITIONS[alert.state]:
        raise InputError(
            f"alert {alert.rule!r} is {alert.state.value}; it cannot become {to.value}"
        )
    return alert.model_copy(update={"state": to, "changed_at": datetime.now(UTC), **changes})


def _by_group(history: Sequence[WindowReport]) -> dict[str | None, list[WindowReport]]:
    groups: dict[str | None, list[WindowReport]] = {}
    for report in history:
        groups.setdefault(report.group, []).append(report)
    return groups
