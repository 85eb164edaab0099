"""Report figures drawn with matplotlib's Agg canvas and returned as base64 PNG strings.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas, never through
pyplot, so drawing touches no global state and works without a display or in threads.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image as PILImage

from radvigil.data.io import read_image
from radvigil.errors import InputError
from radvigil.evaluation.result import DecisionMetrics, Estimate, EvaluationResult, Subgroup

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128


def _encode(figure: Figure) -> str:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _values(points: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in points], dtype=float)


def _label(name: str, metric: str, value: float | None) -> str:
    return f"{name} ({metric} {value:.3f})" if value is not None else f"{name} ({metric} n/a)"


def roc_figure(result: EvaluationResult) -> str:
    """ROC curve of each finding with its operating point marked."""
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for curve in (c for c in result.roc if c.name in result.findings):
        ax.plot(_values(curve.x), _values(curve.y), label=_label(curve.name, "AUC", curve.area))
        point = result.finding(curve.name)
        if point.specificity.value is not None and point.sensitivity.value is not None:
            ax.plot(1 - point.specificity.value, point.sensitivity.value, "o", color="black")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _encode(figure)


def pr_figure(result: EvaluationResult) -> str:
    """Precision-recall curve of each finding with its operating point marked."""
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for curve in (c for c in result.pr if c.name in result.findings):
        ax.plot(_values(curve.x), _values(curve.y), label=_label(curve.name, "AP", curve.area))
        point = result.finding(curve.name)
        if point.ppv.value is not None and point.sensitivity.value is not None:
            ax.plot(point.sensitivity.value, point.ppv.value, "o", color="black")
    ax.set(xlabel="sensitivity (recall)", ylabel="PPV (precision)", title="Precision-recall")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    return _encode(figure)


def reliability_figure(result: EvaluationResult) -> str:
    """Observed frequency against mean predicted probability per bin, for each finding."""
    figure = Figure(figsize=(5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    for cal in (c for c in result.calibration if c.name in result.findings):
        label = _label(cal.name, "ECE", cal.ece.value)
        ax.plot(_values(cal.mean_predicted), _values(cal.observed), "o-", label=label)
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Reliability")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    return _encode(figure)


def confusion_figure(decisions: list[DecisionMetrics], classes: list[str]) -> str:
    """Confusion matrices side by side, one per decision rule, counts written in each cell."""
    figure = Figure(figsize=(4.2 * len(decisions), 3.8), layout="constrained")
    for k, decision in enumerate(decisions, start=1):
        ax = figure.add_subplot(1, len(decisions), k)
        matrix = np.array(decision.confusion)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            dark = count > matrix.max() / 2
            ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted", ylabel="true", title=f"decision: {decision.rule}")
    return _encode(figure)


def subgroup_figure(subgroups: list[Subgroup], column: str, findings: list[str]) -> str | None:
    """Sensitivity of each finding per group of ``column`` with CI whiskers; None if none."""
    groups = [g for g in subgroups if g.column == column and g.status == "ok"]
    if not groups:
        return None
    figure = Figure(figsize=(6, 0.3 * len(groups) * len(findings) + 1.4), layout="constrained")
    ax = figure.add_subplot()
    height = 0.8 / len(findings)
    for j, finding in enumerate(findings):
        estimates = [_sensitivity(group, finding) for group in groups]
        value = np.array([np.nan if e.value is None else e.value for e in estimates])
        low = np.array([np.nan if e.low is None else e.low for e in estimates])
        high = np.array([np.nan if e.high is None else e.high for e in estimates])
        errors = np.nan_to_num(np.stack([value - low, high - value]))
        defined = ~np.isnan(value)  # no bar where a group has no case of the finding
        positions = np.arange(len(groups)) + j * height
        ax.barh(
            positions[defined],
            value[defined],
            height=height,
            xerr=errors[:, defined],
            capsize=3,
            label=finding,
        )
    ax.set_yticks(
        np.arange(len(groups)) + height * (len(findings) - 1) / 2,
        [f"{g.group} (n={g.n})" for g in groups],
    )
    ax.set_xlim(0, 1)
    ax.set(xlabel="sensitivity at the operating threshold", title=f"by {column}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _encode(figure)


def _sensitivity(group: Subgroup, finding: str) -> Estimate:
    return next(f for f in group.findings if f.finding == finding).sensitivity


def thumbnail(path: str | Path, size: int = THUMBNAIL_SIZE) -> str | None:
    """A grayscale PNG thumbnail (longest side ``size``) as base64; None if unreadable."""
    try:
        image = read_image(path)
    except InputError as exc:
        logger.warning("no thumbnail for %s: %s", path, exc.message)
        return None
    pil = PILImage.fromarray(image.pixels)
    pil.thumbnail((size, size))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
