"""The clinical evaluation report: a self-contained HTML page and its JSON twin.

The HTML embeds every figure and thumbnail as base64 PNG (no CDN, no external file), opens with a
plain-language summary and a decision-support disclaimer, and lists caveats before any table.
The JSON twin holds the same numbers without images, for machines and audits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from radvigil import __version__
from radvigil.evaluation import figures
from radvigil.evaluation.result import Estimate, EvaluationResult
from radvigil.evaluation.verdict import Verdict, verdict_table_rows

DISCLAIMER = (
    "Decision support only. This report describes how a machine-learning model performed on a "
    "fixed set of previously labelled images. It is not a diagnosis, does not replace review of "
    "the images by a qualified clinician, and does not guarantee the same performance on other "
    "patients, hospitals, equipment or populations."
)


def fmt_estimate(estimate: Estimate | None, digits: int = 2, level: float = 0.95) -> str:
    """``0.97 (95% CI 0.95-0.99)``, or ``n/a`` when undefined."""
    if estimate is None or estimate.value is None:
        return "n/a"
    if estimate.low is None or estimate.high is None:
        return f"{estimate.value:.{digits}f}"
    return (
        f"{estimate.value:.{digits}f} ({round(level * 100):g}% CI "
        f"{estimate.low:.{digits}f}-{estimate.high:.{digits}f})"
    )


def summary_sentences(result: EvaluationResult, verdict: Verdict | None = None) -> list[str]:
    """Plain-language statements a radiologist can read before any table."""
    level = result.options.ci_level
    lines = []
    for item in result.finding_metrics:
        positives, negatives = item.tp + item.fn, item.fp + item.tn
        lines.append(
            f"{item.finding.capitalize()}: sensitivity {fmt_estimate(item.sensitivity, 2, level)} "
            f"and specificity {fmt_estimate(item.specificity, 2, level)} at threshold "
            f"{item.threshold:.2f}. Of {positives} images with {item.finding}, {item.fn} were "
            f"missed; {item.fp} of {negatives} images without it were flagged. "
            f"AUC {fmt_estimate(item.auc, 2, level)}; calibration error (ECE) "
            f"{fmt_estimate(item.ece, 2, level)}."
        )
    for finding in result.findings:
        lowest = _lowest_subgroup(result, finding)
        if lowest:
            lines.append(lowest)
    small = [g for g in result.subgroups if g.status == "too_small"]
    if small:
        lines.append(
            f"{len(small)} subgroup(s) had fewer than {result.options.min_subgroup_size} images "
            "and are reported as too small, without metrics."
        )
    if verdict is not None:
        lines.append(f"Release gates: {verdict.summary()}.")
    return lines


def _lowest_subgroup(result: EvaluationResult, finding: str) -> str | None:
    rated = [
        (group, row.sensitivity)
        for group in result.subgroups
        if group.status == "ok"
        for row in group.findings
        if row.finding == finding and row.sensitivity.value is not None
    ]
    if len(rated) < 2:
        return None
    group, sensitivity = min(rated, key=lambda pair: pair[1].value or 0.0)  # None filtered above
    return (
        f"Lowest subgroup sensitivity for {finding}: {group.column} = {group.group} "
        f"(n={group.n}), {fmt_estimate(sensitivity, 2, result.options.ci_level)}."
    )


def report_payload(
    result: EvaluationResult, verdict: Verdict | None = None, caveats: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON twin: every number of the report, no images."""
    return {
        "radvigil_version": __version__,
        "summary": summary_sentences(result, verdict),
        "caveats": [*result.caveats, *caveats],
        "evaluation": result.model_dump(mode="json"),
        "verdict": verdict.model_dump(mode="json") if verdict is not None else None,
    }


def render_html(
    result: EvaluationResult,
    verdict: Verdict | None = None,
    caveats: Sequence[str] = (),
    title: str = "Clinical evaluation report",
) -> str:
    """The report as one self-contained HTML document."""
    environment = Environment(
        loader=PackageLoader("radvigil.evaluation", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    level = result.options.ci_level
    environment.filters["est"] = lambda estimate, digits=3: fmt_estimate(estimate, digits, level)
    columns = sorted({g.column for g in result.subgroups})
    subgroup_figures = [
        (column, image)
        for column in columns
        if (image := figures.subgroup_figure(result.subgroups, column, result.findings))
    ]
    errors = [
        (case, figures.thumbnail(case.path) if case.path else None) for case in result.worst_errors
    ]
    return environment.get_template("report.html").render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        disclaimer=DISCLAIMER,
        summary=summary_sentences(result, verdict),
        caveats=[*result.caveats, *caveats],
        r=result,
        level=f"{round(result.options.ci_level * 100):g}% CI",
        verdict=verdict,
        verdict_rows=verdict_table_rows(verdict) if verdict is not None else [],
        roc=figures.roc_figure(result),
        pr=figures.pr_figure(result),
        reliability=figures.reliability_figure(result),
        confusion=figures.confusion_figure(result.decisions, result.classes),
        subgroup_columns=columns,
        subgroup_figures=subgroup_figures,
        errors=errors,
    )


def write_report(
    result: EvaluationResult,
    out_dir: str | Path,
    verdict: Verdict | None = None,
    caveats: Sequence[str] = (),
    *,
    title: str = "Clinical evaluation report",
    stem: str = "evaluation_report",
) -> tuple[Path, Path]:
    """Write ``<stem>.html`` and ``<stem>.json`` into ``out_dir`` and return both paths.

    Args:
        result: what :func:`radvigil.evaluation.evaluate` returned.
        out_dir: the folder to write into (created if missing).
        verdict: the gate verdict to include, if gates were run.
        caveats: caveats to show in addition to those detected automatically.
        title: the report's heading.
        stem: the file name without extension.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    html_path, json_path = folder / f"{stem}.html", folder / f"{stem}.json"
    html_path.write_text(render_html(result, verdict, caveats, title), encoding="utf-8")
    payload = report_payload(result, verdict, caveats)
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    return html_path, json_path
