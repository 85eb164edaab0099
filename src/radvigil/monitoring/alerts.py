"""Alert rules and the alert life cycle, as pure functions over window reports.

A rule fires for a group (overall, or e.g. ``site=B``) when its detector flagged the last
``consecutive`` windows of that group in a row, optionally at its own threshold. An alert is
``open`` -> ``acknowledged`` -> ``resolved`` (or straight from open to resolved); persisting
the state is the store's job, deciding it is done here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    message: str
    acknowledged_by: str | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    changed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def active(self) -> bool:
        return self.state != AlertState.RESOLVED


def evaluate_rules(
    rules: Sequence[AlertRule], history: Sequence[WindowReport], active: Iterable[Alert] = ()
) -> list[Alert]:
    """Alerts to open now: rules that fire on the latest windows and are not already active.

    Args:
        rules: The alert rules.
        history: Window reports in time order (any mix of groups).
        active: Alerts currently open or acknowledged (one per rule and group at most).

    Returns:
        New open alerts, one per rule and group that fired.
    """
    busy = {(a.rule, a.group) for a in active if a.active}
    opened = []
    for group, reports in _by_group(history).items():
        for rule in rules:
            recent = reports[-rule.consecutive :]
            if (rule.key, group) in busy or len(recent) < rule.consecutive:
                continue
            results = [r.result(rule.detector) for r in recent]
            if all(rule.flags(r) for r in results):
                last = results[-1]
                threshold = rule.threshold if rule.threshold is not None else last.threshold
                where = f" on {group}" if group else ""
                opened.append(
                    Alert(
                        rule=rule.key,
                        detector=rule.detector,
                        group=group,
                        severity=rule.severity,
                        windows=[r.window for r in recent],
                        statistic=last.statistic,
                        threshold=threshold,
                        message=(
                            f"{rule.detector} flagged drift{where} in {rule.consecutive} "
                            f"consecutive window(s); last statistic {last.statistic:.4g} > "
                            f"threshold {threshold:.4g}"
                        ),
                    )
                )
    return opened


def alerts_to_resolve(
    rules: Sequence[AlertRule], history: Sequence[WindowReport], active: Iterable[Alert]
) -> list[Alert]:
    """Active alerts whose detector ran clean on as many windows in a row as it took to fire."""
    by_key = {r.key: r for r in rules}
    groups = _by_group(history)
    resolved = []
    for alert in active:
        rule = by_key.get(alert.rule)
        recent = groups.get(alert.group, [])[-rule.consecutive :] if rule else []
        if not rule or not alert.active or len(recent) < rule.consecutive:
            continue
        results = [r.result(rule.detector) for r in recent]
        if all(r is not None and not r.skipped and not rule.flags(r) for r in results):
            resolved.append(
                resolve(alert, "monitor", f"clean in {rule.consecutive} consecutive window(s)")
            )
    return resolved


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
