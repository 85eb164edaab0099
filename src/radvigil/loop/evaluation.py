"""Score a registered model version on a dataset split, evaluate it, and gate it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion
from radvigil.data.shifts import Shift, apply_shift, get_shift
from radvigil.errors import DataError
from radvigil.evaluation import (
    EvaluationInputs,
    EvaluationOptions,
    EvaluationResult,
    GateCriteria,
    Verdict,
    evaluate,
    run_gates,
    write_report,
)
from radvigil.evaluation.criteria import Robustness
from radvigil.evaluation.gates import perturbed_key
from radvigil.loop.gate_records import criteria_hash
from radvigil.model.engine import OnnxEngine
from radvigil.registry import LoadedModel, Registry, Tag
from radvigil.store.deployments import GateVerdict
from radvigil.task import Task

if TYPE_CHECKING:
    from radvigil.loop.deployment import Deployments

Progress = Callable[[Iterable], Iterable]
BATCH = 64


@dataclass
class Scored:
    """One model's calibrated probabilities on one split, aligned with the manifest rows."""

    labels: list[str]
    probs: np.ndarray
    frame: pd.DataFrame
    paths: list[Path]
    thresholds: dict[str, float]
    site_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    def inputs(self) -> EvaluationInputs:
        return EvaluationInputs(
            self.labels,
            self.probs,
            self.thresholds,
            self.frame,
            item_ids=list(self.frame["sha256"]),
            site_thresholds=self.site_thresholds,
        )


def task_of(loaded: LoadedModel) -> Task:
    return loaded.card.task


def score(
    loaded: LoadedModel,
    version: DatasetVersion,
    split: str,
    progress: Progress = lambda x: x,
    perturb: Shift | None = None,
    seed: int = 0,
) -> Scored:
    """Run the version's ONNX graph over every image of ``split`` (labels checked first).

    With ``perturb``, each image is changed first, seeded by ``seed`` and its row number, so
    the same suite gives the same pixels on every run.
    """
    task = task_of(loaded)
    part = version.split(split).frame
    labels = task.targets(part.to_dict("records"))
    unknown = sorted(set(labels) - set(task.classes))
    if unknown:
        raise DataError(
            f"dataset {version.id} has labels {unknown} that task {task.name!r} does "
            f"not know (it predicts {task.classes})"
        )
    engine = OnnxEngine(loaded.onnx_path)
    paths = [version.root / p for p in part["path"]]
    probs = []
    chunks = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
    for start, chunk in zip(range(0, len(paths), BATCH), progress(chunks), strict=True):
        pixels = [read_image(p).pixels for p in chunk]
        if perturb is not None:
            pixels = [apply_shift(x, perturb, (seed, start + i)) for i, x in enumerate(pixels)]
        probs.append(engine.predict(pixels)[0])
    return Scored(
        labels,
        np.concatenate(probs),
        part,
        paths,
        loaded.card.operating_thresholds(),
        dict(loaded.card.site_thresholds),
    )


def evaluate_version(
    loaded: LoadedModel, version: DatasetVersion, split: str, progress: Progress = lambda x: x
) -> tuple[EvaluationResult, Scored]:
    """Evaluate on ``split``; operating points are chosen on the version's val split if any."""
    task = task_of(loaded)
    test = score(loaded, version, split, progress)
    validation = None
    if split != "val" and (version.frame["split"] == "val").any():
        val = score(loaded, version, "val", progress)
        validation = (val.labels, val.probs)
    options = EvaluationOptions(sensitivity_targets=task.target_sensitivity)
    context = {"model": f"{loaded.name}/{loaded.version}", "dataset": version.id, "split": split}
    result = evaluate(
        test.labels,
        test.probs,
        task.classes,
        task.findings,
        test.thresholds,
        test.frame,
        paths=[str(p) for p in test.paths],
        validation=validation,
        options=options,
        context=context,
        site_thresholds=test.site_thresholds,
    )
    return result, test


def gate_version(
    criteria: GateCriteria,
    candidate: LoadedModel,
    champion: LoadedModel | None,
    version: DatasetVersion,
    split: str,
    problem_cases: DatasetVersion | None = None,
    progress: Progress = lambda x: x,
) -> Verdict:
    """Judge ``candidate`` against ``criteria`` and the champion on the same hold-out items."""
    task = task_of(candidate)
    cand = score(candidate, version, split, progress).inputs()
    perturbed = {
        perturbed_key(item.shift, level): score(
            candidate, version, split, progress, get_shift(item.shift, **params), gate.seed
        ).inputs()
        for gate in criteria.gates
        if isinstance(gate, Robustness)
        for item in gate.suite
        for level, params in (("mild", item.mild), ("strong", item.strong))
        if level == "mild" or gate.report_strong
    }
    champ = score(champion, version, split, progress).inputs() if champion else None
    problems = None
    if problem_cases is not None:
        all_rows = DatasetVersion(problem_cases.frame.assign(split="test"), problem_cases.root)
        problems = (
            score(candidate, all_rows, "test", progress).inputs(),
            score(champion, all_rows, "test", progress).inputs() if champion else None,
        )
    return run_gates(
        criteria,
        cand,
        champ,
        problems,
        classes=task.classes,
        findings=task.findings,
        perturbed=perturbed,
    )


def report_dir(reports: Path, loaded: LoadedModel, data_id: str, split: str) -> Path:
    suffix = "" if loaded.precision == "fp32" else f"-{loaded.precision}"
    return reports / f"{loaded.name}-v{loaded.version}{suffix}-{data_id}-{split}"


def write_and_log(
    result: EvaluationResult,
    verdict: Verdict | None,
    out_dir: Path,
    registry: Registry,
    loaded: LoadedModel,
    data_id: str,
    split: str,
) -> tuple[Path, Path]:
    """Write the HTML/JSON report and attach both to the evaluated version's MLflow run."""
    html, js = write_report(result, out_dir, verdict=verdict)
    for path in (html, js):
        registry.log_artifact(loaded.run_id, path, f"evaluation/{data_id}-{split}")
    return html, js


def load_problem_cases(catalog: DatasetCatalog, ref: str | None) -> DatasetVersion | None:
    return catalog.load(ref) if ref else None


def verdict_tag(verdict: Verdict) -> str:
    failed = [f"{row.name}:{row.finding or row.subgroup or row.metric}" for row in verdict.failures]
    return json.dumps({"passed": verdict.passed, "failed": failed})[:4000]


def record_gate(
    registry: Registry,
    loaded: LoadedModel,
    verdict: Verdict,
    criteria: GateCriteria | None,
    *,
    actor: str,
    deployments: Deployments | None = None,
) -> None:
    """Record a gate verdict: the MLflow tag humans read and, under registry trust, the
    signed gate record serving trusts (the one home of this step for every gating path)."""
    tag = Tag.gate(loaded.precision)
    registry.set_version_tag(loaded.name, loaded.version, tag, verdict_tag(verdict))
    if deployments is not None:
        outcome: GateVerdict = "passed" if verdict.passed else "failed"
        deployments.sign(loaded, outcome, criteria_hash(criteria), actor)
