"""Chart data: plain functions from numbers to Chart.js configurations (JSON-safe dicts).

Pages embed these in ``<script type="application/json">`` blocks; ``dashboard.js`` hands each
to the vendored Chart.js. Nothing here touches the database or the request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

# Muted, colour-blind-safe hues (Okabe-Ito family), and grey for reference data.
BLUE, ORANGE, GREEN, RED, GREY, PURPLE = (
    "#0b5394",
    "#c26a00",
    "#1b7f5b",
    "#b3261e",
    "#8a8f98",
    "#6a3d9a",
)


def time_label(moment: datetime, bucket_seconds: int | None = None) -> str:
    """A short axis label: seconds only when buckets are shorter than a minute."""
    fmt = "%m-%d %H:%M:%S" if bucket_seconds is not None and bucket_seconds < 60 else "%m-%d %H:%M"
    return moment.strftime(fmt)


def _clean(values: Sequence[float | None]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        out.append(None if v is None or not math.isfinite(float(v)) else round(float(v), 6))
    return out


def series(
    label: str,
    values: Sequence[float | None],
    color: str,
    *,
    dashed: bool = False,
    fill: str | bool = False,
    axis: str = "y",
    kind: str | None = None,
) -> dict[str, Any]:
    """One line (or bar, with ``kind="bar"``) of a chart."""
    data = {
        "label": label,
        "data": _clean(values),
        "borderColor": color,
        "backgroundColor": color + ("33" if fill else "cc"),
        "borderWidth": 2,
        "pointRadius": 2,
        "spanGaps": True,
        "fill": fill,
        "yAxisID": axis,
    }
    if dashed:
        data |= {"borderDash": [6, 4], "pointRadius": 0, "borderWidth": 1.5}
    if kind:
        data["type"] = kind
    if kind == "bar" and axis == "y2":  # context bars (counts) stay light behind the lines
        data |= {"backgroundColor": color + "40", "borderColor": color + "80", "order": 10}
    return data


def band(label: str, low: Sequence[float | None], high: Sequence[float | None], color: str):
    """Two datasets drawing a shaded interval (the upper one fills down to the lower)."""
    lower = series(f"{label} (lower)", low, color) | {
        "borderWidth": 0,
        "pointRadius": 0,
        "backgroundColor": "transparent",
    }
    upper = series(label, high, color) | {
        "borderWidth": 0,
        "pointRadius": 0,
        "backgroundColor": color + "2e",
        "fill": "-1",
    }
    return [lower, upper]


def markers(label: str, values: Sequence[float | None], color: str = RED) -> dict[str, Any]:
    """Points only (e.g. alerts on a timeline): ``None`` where there is nothing to mark."""
    return series(label, values, color) | {
        "showLine": False,
        "pointStyle": "triangle",
        "pointRadius": 7,
        "pointHoverRadius": 9,
        "backgroundColor": color,
    }


def line(
    labels: Sequence[str],
    datasets: list[dict[str, Any]],
    *,
    y_title: str,
    y_range: tuple[float | None, float | None] = (None, None),
    y2_title: str | None = None,
) -> dict[str, Any]:
    """A line chart over category labels (times already formatted)."""
    scales: dict[str, Any] = {
        "x": {"offset": True, "ticks": {"maxRotation": 0, "autoSkipPadding": 12}},
        "y": {"title": {"display": True, "text": y_title}, "beginAtZero": y_range[0] == 0},
    }
    if y_range[0] is not None:
        scales["y"]["min"] = y_range[0]
    if y_range[1] is not None:
        scales["y"]["max"] = y_range[1]
    if y2_title:
        scales["y2"] = {
            "position": "right",
            "title": {"display": True, "text": y2_title},
            "grid": {"drawOnChartArea": False},
            "beginAtZero": True,
        }
    return {
        "type": "line",
        "data": {"labels": list(labels), "datasets": datasets},
        "options": {"scales": scales, "interaction": {"mode": "index", "intersect": False}},
    }


def scatter(datasets: list[dict[str, Any]], *, x_title: str, y_title: str) -> dict[str, Any]:
    return {
        "type": "scatter",
        "data": {"datasets": datasets},
        "options": {
            "scales": {
                "x": {"title": {"display": True, "text": x_title}},
                "y": {"title": {"display": True, "text": y_title}},
            },
            "interaction": {"mode": "nearest", "intersect": True},
        },
    }


def points(
    label: str, xy: np.ndarray, color: str, *, radius: float = 3, limit: int = 600
) -> dict[str, Any]:
    """A scatter dataset of the first two columns of ``xy`` (evenly thinned to ``limit``)."""
    xy = np.asarray(xy, dtype=float)
    if len(xy) > limit:
        xy = xy[np.linspace(0, len(xy) - 1, limit).astype(int)]
    data = [
        {"x": round(float(x), 4), "y": round(float(y), 4)}
        for x, y in xy[:, :2]
        if math.isfinite(x) and math.isfinite(y)
    ]
    return {
        "label": f"{label} (n={len(data)})",
        "data": data,
        "backgroundColor": color + "99",
        "borderColor": color,
        "pointRadius": radius,
    }


def histogram_pair(
    reference: Sequence[float], current: Sequence[float], *, bins: int = 20, title: str
) -> dict[str, Any] | None:
    """Reference and current shares per shared bin, as a grouped bar chart (None if empty).

    Positive values spanning more than two decades (e.g. sharpness under added noise) are
    binned on a log scale, so the bulk of the reference is not squashed into one bar.
    """
    ref = np.asarray([v for v in reference if v is not None], dtype=float)
    cur = np.asarray([v for v in current if v is not None], dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if not len(ref) and not len(cur):
        return None
    both = np.concatenate([ref, cur])
    log = bool(both.min() > 0 and both.max() / both.min() > 100)
    if log:
        ref, cur, both = np.log10(ref), np.log10(cur), np.log10(both)
        title = f"{title} (log scale)"
    edges = np.histogram_bin_edges(both, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    shares = [
        (np.histogram(v, bins=edges)[0] / len(v)).tolist() if len(v) else [0.0] * bins
        for v in (ref, cur)
    ]
    return {
        "type": "bar",
        "data": {
            "labels": [f"{10**c if log else c:.3g}" for c in centres],
            "datasets": [
                series(f"reference (n={len(ref)})", shares[0], GREY, kind="bar"),
                series(f"current (n={len(cur)})", shares[1], BLUE, kind="bar"),
            ],
        },
        "options": {
            "scales": {
                "x": {"title": {"display": True, "text": title}},
                "y": {"title": {"display": True, "text": "share of images"}, "beginAtZero": True},
            }
        },
    }


def wilson(successes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default); (nan, nan) when ``total`` is 0."""
    if total <= 0:
        return math.nan, math.nan
    p = successes / total
    denominator = 1 + z**2 / total
    centre = (p + z**2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
