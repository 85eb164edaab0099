"""Acceptance gates: criteria from YAML judged on arrays, with evidence for every check.

Gate kinds are registered under a string key (:data:`GATES`); a criteria file lists the kinds
to apply and their settings. Inputs are arrays, never files or models: the caller runs each
model on the same hold-out items (and optionally on a problem-case set) and passes the outputs.
Comparisons with the champion use a *paired* bootstrap: both models are scored on the same
resamples, and the interval is that of the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError

from radvigil.errors import ConfigError, DataError
from radvigil.evaluation.bootstrap import estimate
from radvigil.evaluation.criteria import (
    FindingFloor,
    GateConfig,
    GateCriteria,
    MaxEce,
    MinAuc,
    MinSensitivity,
    MinSpecificity,
    NonInferiority,
    ProblemCases,
    Robustness,
    SubgroupFloor,
)
from radvigil.evaluation.decision import (
    check_probabilities,
    encode_labels,
    finding_indices,
    row_thresholds,
    selected_thresholds,
    site_column,
)
from radvigil.evaluation.evidence import GateContext, Prepared, judge
from radvigil.evaluation.statistics import finding_statistic
from radvigil.evaluation.subgroups import iter_groups, resolve_columns
from radvigil.evaluation.verdict import GateRow, Verdict

Check = Callable[[Any, GateContext], list[GateRow]]


@dataclass(frozen=True)
class EvaluationInputs:
    """One model's outputs on one labelled set: what every gate reads.

    ``item_ids`` (e.g. manifest sha256) let paired gates prove two inputs cover the same items.
    ``site_thresholds``: an item whose ``frame`` row names a listed site is flagged at that
    site's own thresholds (site calibration), every other item at ``thresholds``.
    """

    y_true: Sequence[str] | np.ndarray
    probs: np.ndarray
    thresholds: Mapping[str, float]
    frame: pd.DataFrame | None = None
    item_ids: Sequence[str] | None = None
    site_thresholds: Mapping[str, Mapping[str, float]] | None = None


@dataclass(frozen=True)
class GateKind:
    """A registered gate: the settings it reads and the check it runs."""

    config: type[GateConfig]
    check: Check


GATES: dict[str, GateKind] = {}


def register_gate(kind: str, config: type[GateConfig]) -> Callable[[Check], Check]:
    """Register ``check`` as gate ``kind`` configured by ``config``."""

    def decorate(check: Check) -> Check:
        GATES[kind] = GateKind(config, check)
        return check

    return decorate


def gate_kind(kind: str) -> GateKind:
    """The registered gate ``kind``; the error lists the valid kinds."""
    if kind not in GATES:
        raise ConfigError(f"unknown gate kind {kind!r}; valid kinds: {sorted(GATES)}")
    return GATES[kind]


def load_criteria(path: str | Path) -> GateCriteria:
    """Read and validate a gates YAML file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read gate criteria {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"gate criteria {path} is not valid YAML: {exc}") from exc
    return criteria_from_dict(data, source=str(path))


def criteria_from_dict(data: Any, source: str = "criteria") -> GateCriteria:
    """Validate criteria given as a mapping, each gate against its registered settings."""
    if not isinstance(data, dict) or not isinstance(data.get("gates"), list):
        raise ConfigError(f"{source}: expected a mapping with a list under 'gates'")
    gates = []
    for number, entry in enumerate(data["gates"], start=1):
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ConfigError(
                f"{source}: gate #{number} needs a 'kind'; valid kinds: {sorted(GATES)}"
            )
        kind = str(entry["kind"])
        where = f"{source}: gate #{number} ({kind})"
        gates.append(_validated(gate_kind(kind).config, entry, where))
    return _validated(GateCriteria, {**data, "gates": gates}, source)


def _validated(model: type[BaseModel], data: dict, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"{where}: invalid settings ({problems})") from exc


def run_gates(
    criteria: GateCriteria,
    candidate: EvaluationInputs,
    champion: EvaluationInputs | None = None,
    problem_cases: tuple[EvaluationInputs, EvaluationInputs | None] | None = None,
    *,
    classes: Sequence[str],
    findings: Sequence[str],
    perturbed: Mapping[str, EvaluationInputs] | None = None,
) -> Verdict:
    """Judge ``candidate`` against every gate of ``criteria``.

    Args:
        criteria: the gates to apply (see :func:`load_criteria`).
        candidate: the candidate's outputs on the hold-out set.
        champion: the current champion's outputs on the same items, if there is one.
        problem_cases: (candidate, champion or None) outputs on a set of known hard cases.
        classes: the task's class names, the column order of every ``probs``.
        findings: the classes that are findings.
        perturbed: the candidate's outputs on the same items under each perturbation of a
            robustness gate, keyed by :func:`perturbed_key`.

    Raises:
        DataError: bad labels or probabilities, paired inputs on different items, or a
            subgroup column that does not exist.
        ConfigError: an unknown gate kind or a finding without a threshold.
    """
    f_idx = finding_indices(classes, findings)
    models = {"candidate": candidate, "champion": champion}
    if problem_cases is not None:
        models |= {"problem_candidate": problem_cases[0], "problem_champion": problem_cases[1]}
    models |= dict(perturbed or {})
    prepared = {
        name: _prepare(inputs, classes, findings, name)
        for name, inputs in models.items()
        if inputs is not None
    }
    _check_same_items(prepared, "candidate", "champion", models)
    _check_same_items(prepared, "problem_candidate", "problem_champion", models)
    for key in perturbed or {}:
        _check_same_items(prepared, "candidate", key, models)
    context = GateContext(criteria, list(findings), f_idx, prepared, candidate.frame)
    rows = [
        row if config.gating else row.model_copy(update={"gating": False})
        for config in criteria.gates
        for row in gate_kind(config.kind).check(config, context)
    ]
    return Verdict(
        passed=all(row.status != "fail" for row in rows if row.gating),
        rows=rows,
        ci_level=criteria.ci_level,
        n_resamples=criteria.n_resamples,
        seed=criteria.seed,
    )


def _prepare(
    inputs: EvaluationInputs, classes: Sequence[str], findings: Sequence[str], name: str
) -> Prepared:
    try:
        y = encode_labels(inputs.y_true, classes)
        p = check_probabilities(inputs.probs, y.size, classes)
    except DataError as exc:
        raise DataError(f"{name}: {exc.message}") from exc
    sites = site_column(inputs.frame)
    return y, p, row_thresholds(inputs.thresholds, findings, sites, inputs.site_thresholds)


def _check_same_items(
    prepared: dict[str, Prepared],
    first: str,
    second: str,
    models: dict[str, EvaluationInputs | None],
) -> None:
    if first not in prepared or second not in prepared:
        return
    model_a, model_b = models[first], models[second]
    ids_a = model_a.item_ids if model_a is not None else None
    ids_b = model_b.item_ids if model_b is not None else None
    same_ids = ids_a is None or ids_b is None or list(ids_a) == list(ids_b)
    y_a, y_b = prepared[first][0], prepared[second][0]
    if not same_ids or y_a.shape != y_b.shape or not np.array_equal(y_a, y_b):
        raise DataError(
            f"{first} and {second} must be scored on the same items in the same order for a "
            f"paired comparison ({y_a.size} vs {y_b.size} items, labels or ids differ)"
        )


def _finding_bound(metric: str, comparator: str) -> Check:
    def check(config: FindingFloor, context: GateContext) -> list[GateRow]:
        stats = context.stats("candidate")
        return [
            judge(config, context, metric, stats[metric], j, config.bound(finding), comparator)
            for j, finding in enumerate(context.findings)
        ]

    return check


register_gate("min_sensitivity", MinSensitivity)(_finding_bound("sensitivity", ">="))


@register_gate("min_specificity", MinSpecificity)
def _min_specificity(config: MinSpecificity, context: GateContext) -> list[GateRow]:
    """The specificity floor; a failing row also says, in plain words, whom the model flags."""
    rows = _finding_bound("specificity", ">=")(config, context)
    return [_plain_specificity(row) if row.status == "fail" else row for row in rows]


def _plain_specificity(row: GateRow) -> GateRow:
    if row.value is None or row.threshold is None:
        return row
    plain = (
        f" At its operating threshold the model flags {1 - row.value:.0%} of patients without "
        f"{row.finding}; this gate allows at most {1 - row.threshold:.0%}."
    )
    return row.model_copy(update={"message": row.message + plain})


register_gate("min_auc", MinAuc)(_finding_bound("auc", ">="))
register_gate("max_ece", MaxEce)(_finding_bound("ece", "<="))


@register_gate("non_inferiority", NonInferiority)
def _non_inferiority(config: NonInferiority, context: GateContext) -> list[GateRow]:
    if not context.has("champion"):
        return [context.skipped(config, m, "no champion to compare with") for m in config.metrics]
    diff = context.difference("candidate", "champion")
    return [
        judge(
            config,
            context,
            m,
            diff[m],
            j,
            -config.margins.get(m, config.margin),
            ">",
            difference=True,
        )
        for m in config.metrics
        for j in range(len(context.findings))
    ]


@register_gate("problem_cases", ProblemCases)
def _problem_cases(config: ProblemCases, context: GateContext) -> list[GateRow]:
    metric = config.metric
    if not context.has("problem_candidate"):
        return [context.skipped(config, metric, "no problem-case set given")]
    columns = [None] if metric == "accuracy" else list(range(len(context.findings)))
    rows = []
    if config.min_accuracy is not None:
        accuracy = context.stats("problem_candidate")["accuracy"]
        rows.append(judge(config, context, "accuracy", accuracy, None, config.min_accuracy, ">="))
    rows += _problem_floors(config, context)
    if not context.has("problem_champion"):
        rows.append(context.skipped(config, metric, "no champion outputs on the problem cases"))
        return rows
    diff = context.difference("problem_candidate", "problem_champion")
    for j in columns:
        rows.append(
            judge(config, context, metric, diff[metric], j, -config.margin, ">=", difference=True)
        )
    return rows


def _problem_floors(config: ProblemCases, context: GateContext) -> list[GateRow]:
    """Per-finding sensitivity/specificity floors on the problem cases."""
    if not config.floors:
        return []
    y = context.prepared["problem_candidate"][0]
    stats = context.stats("problem_candidate")
    rows = []
    for metric, floor in config.floors.items():
        for j, finding in enumerate(context.findings):
            positives = int((y == context.finding_idx[j]).sum())
            cases = _cases(metric, positives, y.size - positives)
            if cases < config.min_cases:
                reason = f"only {cases} problem cases to judge {metric} (< {config.min_cases})"
                rows.append(context.skipped(config, metric, reason, finding=finding))
                continue
            rows.append(judge(config, context, metric, stats[metric], j, floor, ">="))
    return rows


@register_gate("subgroup_floor", SubgroupFloor)
def _subgroup_floor(config: SubgroupFloor, context: GateContext) -> list[GateRow]:
    frame = context.frame
    resolve_columns(frame, [config.column])
    y, p, cuts = context.prepared["candidate"]
    rows = []
    for group, mask in iter_groups(frame, config.column):
        where = f"{config.column}={group}"
        n = int(mask.sum())
        if n < config.min_size:
            reason = f"group too small (n={n} < {config.min_size})"
            rows.append(context.skipped(config, config.metric, reason, subgroup=where))
            continue
        stats = estimate(
            finding_statistic(
                y[mask],
                p[mask],
                context.finding_idx,
                selected_thresholds(cuts, mask),
                context.criteria.n_bins,
            ),
            n,
            n_resamples=context.criteria.n_resamples,
            seed=context.criteria.seed,
            level=context.criteria.ci_level,
        )
        for j, finding in enumerate(context.findings):
            positives = int((y[mask] == context.finding_idx[j]).sum())
            cases = _cases(config.metric, positives, n - positives)
            if cases < config.min_cases:
                reason = f"only {cases} cases to judge {config.metric} (< {config.min_cases})"
                rows.append(
                    context.skipped(config, config.metric, reason, finding=finding, subgroup=where)
                )
                continue
            rows.append(
                judge(
                    config,
                    context,
                    config.metric,
                    stats[config.metric],
                    j,
                    config.min,
                    ">=",
                    subgroup=where,
                )
            )
    return rows


def _cases(metric: str, positives: int, negatives: int) -> int:
    return {"sensitivity": positives, "specificity": negatives}.get(
        metric, min(positives, negatives)
    )


def perturbed_key(shift: str, level: str) -> str:
    """How a robustness gate finds the candidate's outputs under ``shift`` at ``level``."""
    return f"perturbed:{shift}:{level}"


@register_gate("robustness", Robustness)
def _robustness(config: Robustness, context: GateContext) -> list[GateRow]:
    """Perturbed minus clean at the candidate's thresholds; mild gated, strong reported.

    The worst mild perturbation of each metric is named in its row, so a failing verdict says
    which processing change the model does not survive.
    """
    levels = ["mild", "strong"] if config.report_strong else ["mild"]
    missing = [
        perturbed_key(p.shift, level)
        for p in config.suite
        for level in levels
        if not context.has(perturbed_key(p.shift, level))
    ]
    if missing:
        return [context.skipped(config, m, "no perturbed outputs given") for m in config.max_drop]
    rows: list[GateRow] = []
    for level in levels:
        for item in config.suite:
            params = item.mild if level == "mild" else item.strong
            described = ", ".join(f"{k} {v:g}" for k, v in params.items())
            where = f"{item.shift} {level} ({described}; seed {config.seed})"
            diff = context.difference(perturbed_key(item.shift, level), "candidate")
            for metric, drop in config.max_drop.items():
                for j in range(len(context.findings)):
                    row = judge(
                        config,
                        context,
                        metric,
                        diff[metric],
                        j,
                        -drop,
                        ">",
                        subgroup=where,
                        difference=True,
                        compared="perturbed - clean",
                    )
                    if level == "strong":
                        row = row.model_copy(
                            update={
                                "status": "skipped",
                                "message": f"reported, not gated: {row.message}",
                            }
                        )
                    rows.append(row)
    return _name_worst(rows)


def _name_worst(rows: list[GateRow]) -> list[GateRow]:
    """Mark the gated row with the largest drop of each metric and finding."""
    worst: dict[tuple[str, str | None], int] = {}
    for i, row in enumerate(rows):
        if row.status == "skipped" or row.value is None:
            continue
        key = (row.metric, row.finding)
        if key not in worst or row.value < rows[worst[key]].value:  # type: ignore[operator]
            worst[key] = i
    for i in worst.values():
        rows[i] = rows[i].model_copy(
            update={"message": f"{rows[i].message} [worst of the suite: {rows[i].subgroup}]"}
        )
    return rows
