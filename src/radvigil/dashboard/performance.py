"""Performance: accuracy from clinicians' labels over time (Wilson CIs), beside the monitors'
labelled metrics and their label-free estimates (CBPE, ATC) per window.

Labelled cases are counted per (version, predicted class, label, day) in the ``label_days``
rollup, kept as labels are written, so the page costs the number of classes and days, not the
number of labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from radvigil.dashboard import charts
from radvigil.dashboard.monitors import performance_view
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import SignedIn
from radvigil.service.deps import State
from radvigil.service.traffic import bucket_for
from radvigil.store import Database
from radvigil.store.aggregates import (
    OutcomeCount,
    labelled_outcomes,
    labelled_outcomes_within,
    labelled_span,
    labelled_times,
)

router = APIRouter(route_class=PageRoute)
DAY = 86400


@dataclass(frozen=True)
class Rate:
    """A proportion with its 95 % Wilson interval."""

    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return charts.wilson(self.hits, self.total) if self.total else None


def rates(cases: Sequence[OutcomeCount], findings: Sequence[str]) -> dict[str, Rate]:
    """Accuracy, and sensitivity/specificity of each finding class, from counts of
    (predicted class, label)."""

    def rate(hit: Callable[[OutcomeCount], bool], among: Callable[[OutcomeCount], bool]) -> Rate:
        inside = [c for c in cases if among(c)]
        return Rate(sum(c.count for c in inside if hit(c)), sum(c.count for c in inside))

    def of_finding(f: str) -> dict[str, Rate]:
        return {
            f"sensitivity ({f})": rate(lambda c: c.predicted == f, lambda c: c.label == f),
            f"specificity ({f})": rate(lambda c: c.predicted != f, lambda c: c.label != f),
        }

    out = {"accuracy": rate(lambda c: c.predicted == c.label, lambda c: True)}
    for finding in findings:
        out |= of_finding(finding)
    return out


def accuracy_chart(db: Database, version: str, target: int = 12) -> dict[str, Any] | None:
    """Accuracy per time bucket of prediction time (buckets with labels only), with its
    95 % interval as a band and the number of labelled cases as bars; counted by the database."""
    span = labelled_span(db, version)
    if span is None:
        return None
    groups: dict[int, list[OutcomeCount]] = {}
    if span[0] == span[1]:  # one day of labels: the daily rollup would draw a single point
        day_end = span[0] + timedelta(seconds=DAY)
        times = labelled_times(db, version, span[0], day_end)
        if times is None:
            return None
        width = bucket_for(times[1] - times[0], target)
        origin = datetime.fromtimestamp(times[0].timestamp() // width * width, UTC)
        cases = labelled_outcomes_within(
            db, model_version=version, origin=origin, until=day_end, bucket_seconds=width
        )
    else:  # the rollup counts whole days, so a bucket is a day or more
        width = max(bucket_for(span[1] - span[0], target), DAY)
        origin = datetime.fromtimestamp(span[0].timestamp() // width * width, UTC)
        days = width // DAY
        cases = labelled_outcomes(db, model_version=version, origin=origin, bucket_days=days)
    for case in cases:
        groups.setdefault(case.bucket, []).append(case)
    if len(groups) < 2:  # one point draws no line or band; the table above has the numbers
        return None
    labels, values, lows, highs, counts = [], [], [], [], []
    for index in sorted(groups):
        inside = groups[index]
        rate = Rate(
            sum(c.count for c in inside if c.predicted == c.label), sum(c.count for c in inside)
        )
        low, high = rate.ci or (None, None)
        labels.append(charts.time_label(origin + timedelta(seconds=index * width), width))
        values.append(rate.value)
        lows.append(low)
        highs.append(high)
        counts.append(rate.total)
    return charts.line(
        labels,
        [
            *charts.band("95 % interval", lows, highs, charts.BLUE),
            charts.series("accuracy (labelled)", values, charts.BLUE),
            charts.series("labelled cases", counts, charts.GREY, axis="y2", kind="bar"),
        ],
        y_title="accuracy",
        y_range=(0, 1),
        y2_title="labelled cases",
    )


@router.get("/performance")
def performance_page(request: Request, state: State, viewer: SignedIn) -> Response:
    viewer.require("read_predictions")
    champion = state.models.champion
    findings = champion.findings if champion else []
    db = state.predictions.db
    cases = labelled_outcomes(db)
    current = [c for c in cases if champion and c.model_version == champion.version]
    return render(
        request,
        "performance.html",
        viewer,
        champion=champion,
        n_cases=sum(c.count for c in cases),
        overall=rates(current, findings),
        accuracy_chart=accuracy_chart(db, champion.version) if champion else None,
        monitors=performance_view(state),
    )
