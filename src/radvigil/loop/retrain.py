"""Retraining from clinicians' labels: new data version, challenger, gates, alias.

The new dataset version is the champion's training data plus the labelled drifters; a seeded
share of them joins the hold-out test split and all of them form the "problem cases" version
the gates check for regressions. Lineage points from the challenger's run to both versions and
to the feedback records used.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radvigil.data.manifest import DatasetVersion, canonical
from radvigil.errors import DataError, ModelError
from radvigil.evaluation import Verdict
from radvigil.loop.evaluation import evaluate_version, gate_version, record_gate, write_and_log
from radvigil.loop.site_calibration import recalibrate
from radvigil.loop.training import run_training
from radvigil.loop.workspace import Workspace
from radvigil.model.config import TrainConfig
from radvigil.registry import CARD_DIR, LoadedModel, Tag
from radvigil.store import FeedbackStore, PredictionStore

FEEDBACK_SOURCE = "clinician_feedback"  # source_dataset of cases labelled through the loop


@dataclass(frozen=True)
class LabelledCase:
    prediction_id: str
    label: str
    png: bytes
    site: str | None
    view_position: str | None
    study_hash: str | None


@dataclass
class RetrainOutcome:
    """What retraining produced, and whether the challenger may be rolled out."""

    version: str
    data_version: str
    problem_cases_version: str
    feedback_cases: int
    verdict: Verdict
    report_path: Path | None

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def labelled_drifters(predictions: PredictionStore, feedback: FeedbackStore) -> list[LabelledCase]:
    """Drifters (routed to review) that carry a clinician's label and stored pixels, selected
    by the database (one query, not one per labelled case)."""
    cases = [
        LabelledCase(row.id, label, row.review_image, row.site, row.view_position, row.study_hash)
        for row, label in feedback.labelled_drifters()
        if row.review_image
    ]
    return content_order(cases)


def content_order(cases: list[LabelledCase]) -> list[LabelledCase]:
    """Cases sorted by their pixels and label, not by prediction id (a random UUID), so the same
    labelled images give the same hold-out split, file names and training order on every run."""
    return sorted(
        cases, key=lambda c: (hashlib.sha256(c.png).hexdigest(), c.label, c.prediction_id)
    )


def build_versions(
    parent: DatasetVersion,
    cases: list[LabelledCase],
    folder: Path,
    holdout_share: float,
    seed: int,
    calibration_share: float = 0.0,
) -> tuple[DatasetVersion, DatasetVersion]:
    """(training version = parent + cases, problem-cases version = the held-out cases).

    A seeded ``holdout_share`` of the cases joins the test split and forms the problem cases
    (never trained on), ``calibration_share`` joins validation, where temperature and operating
    thresholds are fitted, and the rest joins training.
    """
    if not cases:
        raise DataError(
            "no labelled drifters with stored images: label cases in the review queue "
            "(and run the service with RADVIGIL_STORE_REVIEW_IMAGES=true)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(cases)).tolist()
    n_test = round(holdout_share * len(cases))
    n_val = round(calibration_share * len(cases))
    split = {i: "test" for i in order[:n_test]} | {i: "val" for i in order[n_test : n_test + n_val]}
    rows: list[dict[str, str]] = []
    names: Counter[str] = Counter()
    for i, case in enumerate(cases):
        digest = hashlib.sha256(case.png).hexdigest()
        names[digest] += 1  # the same picture labelled twice gets a second file name
        suffix = "" if names[digest] == 1 else f"-{names[digest]}"
        path = folder / f"{digest[:24]}{suffix}.png"
        path.write_bytes(case.png)
        rows.append(
            {
                "path": os.path.relpath(path, parent.root),
                "label": case.label,
                "split": split.get(i, "train"),
                "sha256": digest,
                "patient_id": f"study:{case.study_hash or case.prediction_id}",
                "site": case.site or "",
                "view_position": case.view_position or "",
                "source_dataset": FEEDBACK_SOURCE,
                "prediction_id": case.prediction_id,
            }
        )
    extra = pd.DataFrame(rows)
    source = {
        "kind": "retrain",
        "parent": parent.id,
        "prediction_ids": [c.prediction_id for c in cases],
    }
    merged = canonical(pd.concat([parent.frame, extra], ignore_index=True).fillna(""))
    problems = canonical(extra[extra["split"] == "test"])
    return (
        DatasetVersion(merged, parent.root, {"source": source}),
        DatasetVersion(problems, parent.root, {"source": {**source, "kind": "problem_cases"}}),
    )


@dataclass(frozen=True)
class FeedbackData:
    """The dataset versions built from clinicians' labels, and the lineage tags they give."""

    data_id: str
    problem_id: str
    cases: int
    tags: dict[str, str]


def feedback_data(
    champion: LoadedModel,
    ws: Workspace,
    holdout_share: float,
    calibration_share: float,
    seed: int,
) -> FeedbackData:
    """The champion's data + the labelled drifters (split by content), and the problem cases."""
    cases = labelled_drifters(ws.predictions, ws.feedback)
    parent = ws.catalog.load(champion.card.training_data_version)
    digest = hashlib.sha256(",".join(c.prediction_id for c in cases).encode()).hexdigest()[:12]
    data, problems = build_versions(
        parent,
        cases,
        ws.catalog.folder / f"feedback-{digest}",
        holdout_share,
        seed,
        calibration_share,
    )
    data_id = ws.catalog.save(data, name=f"retrain-{digest}")
    problem_id = ws.catalog.save(problems, name=f"problem-cases-{digest}")
    tags = {
        Tag.PARENT_VERSION: parent.id,
        Tag.PROBLEM_CASES: problem_id,
        Tag.RETRAINED_FROM: f"{champion.name}/{champion.version}",
        Tag.FEEDBACK_IDS: ",".join(c.prediction_id for c in cases)[:4900],
    }
    return FeedbackData(data_id, problem_id, len(cases), tags)


def judge(
    name: str,
    version: str,
    champion: LoadedModel,
    data: FeedbackData,
    ws: Workspace,
    *,
    propose: bool,
    reason: str,
) -> RetrainOutcome:
    """Gate a new version against the champion on the same hold-out and the problem cases,
    tag the verdict, write the report, and alias it ``challenger`` if asked and it passed."""
    candidate = ws.registry.load(f"{name}/{version}")
    held_out = ws.catalog.load(data.data_id)
    problems = ws.catalog.load(data.problem_id)
    verdict = gate_version(ws.criteria, candidate, champion, held_out, "test", problems)
    record_gate(
        ws.registry, candidate, verdict, ws.criteria, actor=ws.actor, deployments=ws.deployments
    )
    result, _ = evaluate_version(candidate, held_out, "test")
    html, _ = write_and_log(
        result,
        verdict,
        ws.reports_dir / f"{name}-v{version}-{data.data_id}-test",
        ws.registry,
        candidate,
        data.data_id,
        "test",
    )
    if propose and verdict.passed:
        why = f"{reason}; gates passed"
        if ws.deployments is not None:
            ws.deployments.set_alias(name, "challenger", version, actor=ws.actor, reason=why)
        else:
            ws.registry.set_alias(name, "challenger", version, ws.actor, why)
    return RetrainOutcome(version, data.data_id, data.problem_id, data.cases, verdict, html)


def retrain(
    champion: LoadedModel,
    ws: Workspace,
    *,
    holdout_share: float = 0.3,
    calibration_share: float = 0.2,
    seed: int = 42,
    local_weight: int = 1,
    warm_start_epochs: int | None = None,
    average_epochs: int = 1,
    target_sensitivity: float | None = None,
    observer=None,
) -> RetrainOutcome:
    """Train a challenger with the champion's config, gate it, and alias it only if it passes.

    ``local_weight`` repeats each labelled local case that many times per epoch: a site's few
    labelled cases would otherwise be lost among the champion's development data.
    ``warm_start_epochs`` continues from the champion's own weights for that many epochs (all
    layers, its learning rate, no warm-up) instead of training again from the
    config's starting weights: a short step from a trained model lands in nearly the same place
    whatever the CPU's rounding, where a full run from ImageNet weights does not (see
    :func:`warm_start_config`). ``average_epochs`` > 1 keeps the average of the last epochs'
    weights, the champion's own counted as epoch 0 after a warm start (WiSE-FT): the challenger
    keeps more of what the champion knew about its own data while it learns the site.
    ``target_sensitivity`` aims the challenger's operating thresholds above the task's target:
    the gates ask it not to be less sensitive than a champion that may have caught every
    hold-out case, so a threshold fitted exactly at the floor fails on one missed case.
    """
    if champion.card.imported is not None:
        raise ModelError(
            f"{champion.name}/{champion.version} is an imported model: radvigil has neither its "
            "training code nor its weights, so it cannot be retrained. Refit its calibration on "
            "the labelled local cases (radvigil retrain --calibration-only) or import the "
            "vendor's next version (radvigil models import)"
        )
    data = feedback_data(champion, ws, holdout_share, calibration_share, seed)
    cfg = TrainConfig.model_validate(champion.card.config)
    tags = dict(data.tags)
    if warm_start_epochs is not None:
        cfg = warm_start_config(cfg, champion, warm_start_epochs)
        tags["warm_start_from"] = f"{champion.name}/{champion.version}"
    if average_epochs > 1:
        warm = warm_start_epochs is not None
        cfg = cfg.model_copy(update={"average_epochs": average_epochs, "average_start": warm})
    if target_sensitivity is not None:
        cfg = cfg.model_copy(update={"target_sensitivity": target_sensitivity})
    if local_weight > 1:
        cfg = cfg.model_copy(
            update={"oversample": {**cfg.oversample, FEEDBACK_SOURCE: local_weight}}
        )
    outcome = run_training(
        cfg, data.data_id, ws.catalog, ws.registry, observer=observer, extra_tags=tags
    )
    judged = judge(
        outcome.name,
        outcome.version,
        champion,
        data,
        ws,
        propose=True,
        reason=f"retrained on {data.cases} labelled drifters",
    )
    _record(ws, "retrain", judged)
    return judged


def warm_start_config(cfg: TrainConfig, champion: LoadedModel, epochs: int) -> TrainConfig:
    """The champion's config, continued from its saved weights for ``epochs`` epochs.

    The champion's trained network (``weights.pt`` beside its card, head included) is the
    starting point; every layer trains from the first step at the champion's learning rate
    with no warm-up, since no layer is new (at a third of it, two epochs moved the demo's
    problem-case specificity nowhere: 0.36 against the champion's 0.18 and a 0.50 floor). The run's
    card records the file and its SHA-256 as its weights, and its tags name the champion.
    """
    weights = champion.folder / CARD_DIR / "weights.pt"
    if not weights.is_file():
        raise DataError(f"{champion.name}/{champion.version} has no saved weights to continue from")
    return TrainConfig.model_validate(
        {
            **cfg.model_dump(),
            "weights": str(weights),
            "epochs": epochs,
            "warmup_epochs": 0,
            "unfreeze_epochs": 0,
            "top_epochs": 0,
        }
    )


def site_calibrate(
    champion: LoadedModel,
    ws: Workspace,
    *,
    holdout_share: float = 0.3,
    calibration_share: float = 0.2,
    seed: int = 42,
    propose: bool = True,
    site: str | None = None,
    target_sensitivity: float | None = None,
) -> RetrainOutcome:
    """Recalibrate the champion on labelled local cases (no retraining) and gate it the same way.

    With ``site``, the new version also flags that site's studies at thresholds fitted on the
    site's labelled cases outside the hold-out (aimed at ``target_sensitivity``, the task's
    target by default); the gates judge them on the held-out ones
    (:func:`radvigil.loop.site_calibration.recalibrate`).
    """
    data = feedback_data(champion, ws, holdout_share, calibration_share, seed)
    outcome = recalibrate(
        champion,
        data.data_id,
        ws.catalog,
        ws.registry,
        extra_tags=data.tags,
        site=site,
        target_sensitivity=target_sensitivity,
    )
    judged = judge(
        outcome.name,
        outcome.version,
        champion,
        data,
        ws,
        propose=propose,
        reason=f"recalibrated on labelled local cases of {data.cases} drifters",
    )
    _record(ws, "site_calibration", judged)
    return judged


def _record(ws: Workspace, action: str, judged: RetrainOutcome) -> None:
    ws.record(
        action,
        ws.actor,
        judged.version,
        {
            "data_version": judged.data_version,
            "problem_cases": judged.problem_cases_version,
            "feedback_cases": judged.feedback_cases,
            "gate": judged.verdict.summary(),
            "challenger": judged.verdict.passed,
        },
    )
