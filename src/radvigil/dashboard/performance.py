"""Performance: accuracy from clinicians' labels over time (Wilson CIs), beside the monitors'
labelled metrics and their label-free estimates (CBPE, ATC) per window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from radvigil.dashboard import charts
from radvigil.dashboard.monitors import performance_view
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import SignedIn
from radvigil.service.deps import State
from radvigil.service.state import ServiceState
from radvigil.service.traffic import bucket_for

router = APIRouter(route_class=PageRoute)


@dataclass(frozen=True)
class Labelled:
    """One labelled, answered prediction."""

    at: datetime
    predicted: str
    label: str
    version: str


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


def labelled_cases(state: ServiceState) -> list[Labelled]:
    """Predictions with a clinician's label (the latest one), oldest first."""
    labels = state.feedback.latest_labels()
    records = state.predictions.get_many(list(labels))
    cases = [
        Labelled(r.created_at, r.predicted_class, labels[r.id], r.model_version)
        for r in records.values()
        if r.served_by != "shadow"
    ]
    return sorted(cases, key=lambda c: c.at)


def rates(cases: Sequence[Labelled], findings: Sequence[str]) -> dict[str, Rate]:
    """Accuracy, and sensitivity/specificity of each finding class (predicted class vs label)."""
    out = {"accuracy": Rate(sum(c.predicted == c.label for c in cases), len(cases))}
    for finding in findings:
        positives = [c for c in cases if c.label == finding]
        negatives = [c for c in cases if c.label != finding]
        out[f"sensitivity ({finding})"] = Rate(
            sum(c.predicted == finding for c in positives), len(positives)
        )
        out[f"specificity ({finding})"] = Rate(
            sum(c.predicted != finding for c in negatives), len(negatives)
        )
    return out


def accuracy_chart(cases: Sequence[Labelled], target: int = 12) -> dict[str, Any] | None:
    """Accuracy per time bucket of prediction time (buckets with labels only), with its
    95 % interval as a band and the number of labelled cases as bars."""
    if not cases:
        return None
    width = bucket_for(cases[-1].at - cases[0].at, target)
    origin = cases[0].at.timestamp() // width * width
    groups: dict[int, list[Labelled]] = {}
    for case in cases:
        groups.setdefault(int((case.at.timestamp() - origin) // width), []).append(case)
    if len(groups) < 2:  # one point draws no line or band; the table above has the numbers
        return None
    labels, values, lows, highs, counts = [], [], [], [], []
    for index in sorted(groups):
        inside = groups[index]
        rate = Rate(sum(c.predicted == c.label for c in inside), len(inside))
        low, high = rate.ci or (None, None)
        labels.append(charts.time_label(datetime.fromtimestamp(origin + index * width, UTC), width))
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
    cases = labelled_cases(state)
    current = [c for c in cases if champion and c.version == champion.version]
    return render(
        request,
        "performance.html",
        viewer,
        champion=champion,
        n_cases=len(cases),
        overall=rates(current, findings),
        accuracy_chart=accuracy_chart(current),
        monitors=performance_view(state),
    )
