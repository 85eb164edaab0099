"""Site calibration: refit a version's temperature and operating thresholds on labelled local
cases, without retraining, and register the result as a new version.

A model validated elsewhere must be re-verified on the site's own cases (seed 001). When a
scanner or population change leaves the ranking intact but moves the probabilities, fitting the
calibration again on the site's labelled cases is the cheapest repair: the weights stay as they
are, the new version records what changed, and it goes through the same gates and rollout.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.manifest import DatasetVersion, canonical
from radvigil.errors import DataError, ModelError
from radvigil.evaluation.crossfit import crossfit_threshold
from radvigil.loop.training import TrainOutcome, open_run, register_result
from radvigil.model.calibrate import softmax
from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet, load_split
from radvigil.model.network import build_classifier, channels_last
from radvigil.model.train import calibrate, predict_arrays
from radvigil.registry import LoadedModel, Registry, Tag
from radvigil.task import Task


def recalibrate(
    champion: LoadedModel,
    data_ref: str,
    catalog: DatasetCatalog,
    registry: Registry,
    *,
    extra_tags: dict[str, str] | None = None,
    site: str | None = None,
    target_sensitivity: float | None = None,
) -> TrainOutcome:
    """A new version with ``champion``'s weights, calibrated on ``data_ref``'s validation split.

    With ``site``, the version also gets that site's own operating thresholds: fitted on the
    site's labelled cases outside the test split (the largest threshold reaching
    ``target_sensitivity``, the task's target by default), with their cross-fitted rates
    recorded, so a threshold chosen on development films no longer decides the site's studies.
    The temperature stays fitted on the whole validation split.

    Raises:
        DataError: the validation split is empty.
        ModelError: the champion has no weights to recalibrate.
    """
    if champion.card.imported is not None:
        if site is not None:
            raise ModelError(
                f"{champion.name}/{champion.version} is an imported model: its calibration can be "
                "refitted (without --site), but site thresholds are fitted only for models "
                "radvigil trained"
            )
        return _recalibrate_imported(champion, data_ref, catalog, registry, extra_tags)
    cfg = TrainConfig.model_validate(champion.card.config)
    task = champion.card.task
    size = champion.card.input.size
    version = catalog.load(data_ref)
    val_set = load_split(version, "val", task, size)
    if len(val_set) == 0:
        raise DataError(f"dataset {version.id} has no validation cases to calibrate on")
    weights = champion.folder / "radvigil" / "weights.pt"
    if not weights.is_file():
        raise ModelError(f"{champion.name}/{champion.version} has no weights to recalibrate")
    model = channels_last(build_classifier(cfg.backbone, len(task.classes)))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    result = replace(calibrate(model.eval(), task, val_set, [{}], 1), history=[])
    change = {
        "from_version": champion.version,
        "temperature": [champion.card.temperature, result.temperature],
        "thresholds": {
            k: [champion.card.thresholds.get(k), v] for k, v in result.thresholds.items()
        },
        "calibrated_on": version.id,
        "validation_cases": len(val_set),
        "crossfit": crossfit_estimates(task, val_set.targets, val_set.frame, result.val_probs),
    }
    if site is not None:
        cases = site_cases(version, site, task, size)
        probs = softmax(predict_arrays(model, cases.images)[0], result.temperature)
        fitted = crossfit_estimates(
            task, cases.targets, cases.frame, probs, target_sensitivity=target_sensitivity
        )
        own = {f: float(e["threshold"]) for f, e in fitted.items() if "threshold" in e}
        if own:
            result = replace(result, site_thresholds={site: own})
        change["site"] = {"name": site, "cases": len(cases), "thresholds": own, "crossfit": fitted}
    tags = {
        Tag.RECALIBRATED_FROM: f"{champion.name}/{champion.version}",
        Tag.SITE_CALIBRATION: json.dumps(change),
        **(extra_tags or {}),
    }
    run = open_run(registry, cfg, task, size, version, tags, {"backend": "site_calibration"})
    try:
        outcome = register_result(
            cfg,
            task,
            size,
            version,
            result,
            run,
            champion.name,
            val_set,
            [f"site calibration of version {champion.version}: weights unchanged"],
        )
    except BaseException:
        run.finish("FAILED")
        raise
    registry.set_version_tag(
        outcome.name, outcome.version, Tag.SITE_CALIBRATION, json.dumps(change)
    )
    return outcome


def _recalibrate_imported(
    champion: LoadedModel,
    data_ref: str,
    catalog: DatasetCatalog,
    registry: Registry,
    extra_tags: dict[str, str] | None,
) -> TrainOutcome:
    """An imported graph has no torch weights: its temperature initializer and thresholds are
    refitted instead (radvigil.loop.model_import.recalibrate_imported)."""
    from radvigil.loop.model_import import recalibrate_imported

    tags = {
        Tag.RECALIBRATED_FROM: f"{champion.name}/{champion.version}",
        **(extra_tags or {}),
    }
    name, version, card = recalibrate_imported(
        champion,
        data_ref,
        catalog,
        registry,
        tags,
        f"site calibration of version {champion.version}: graph unchanged",
    )
    change = {
        "from_version": champion.version,
        "temperature": [champion.card.temperature, card.temperature],
        "thresholds": {k: [champion.card.thresholds.get(k), v] for k, v in card.thresholds.items()},
        "calibrated_on": data_ref,
    }
    registry.set_version_tag(name, version, Tag.SITE_CALIBRATION, json.dumps(change))
    run_id = registry.resolve(f"{name}/{version}").run_id
    return TrainOutcome(name, version, run_id, card, None)


def site_cases(version: DatasetVersion, site: str, task: Task, size: int) -> ArraySet:
    """The labelled cases of ``site`` outside the test split (the cases a site threshold may be
    fitted on: the test split judges it).

    Raises:
        DataError: the site has no such case.
    """
    frame = version.frame
    sites = frame["site"] if "site" in frame else pd.Series([""] * len(frame), index=frame.index)
    mine = frame[(sites == site) & (frame["split"] != "test")]
    if mine.empty:
        raise DataError(
            f"dataset {version.id} has no labelled cases of site {site!r} outside its test "
            "split to fit the site's thresholds on"
        )
    picked = DatasetVersion(canonical(mine.assign(split="val")), version.root)
    return load_split(picked, "val", task, size)


def crossfit_estimates(
    task: Task,
    targets: np.ndarray,
    frame: pd.DataFrame,
    probs: np.ndarray,
    folds: int = 5,
    target_sensitivity: float | None = None,
) -> dict[str, dict[str, float | int | str]]:
    """Per finding, the out-of-fold sensitivity/specificity of the screening threshold fitted on
    the labelled cases, folds by patient (the cases that pick a threshold never judge it), beside
    the optimistic in-sample rates; a finding too thin to cross-fit says why.
    ``target_sensitivity`` replaces the task's target for every finding."""
    ids = frame["patient_id"] if "patient_id" in frame else pd.Series([None] * len(frame))
    patients = np.array(
        [str(p) if pd.notna(p) else f"row-{i}" for i, p in enumerate(ids)], dtype=object
    )
    out: dict[str, dict[str, float | int | str]] = {}
    for finding in task.findings:
        k = task.class_index(finding)
        try:
            fit = crossfit_threshold(
                targets == k,
                probs[:, k],
                patients,
                target_sensitivity=target_sensitivity or task.target_for(finding),
                folds=folds,
            )
        except DataError as exc:
            out[finding] = {"skipped": str(exc)}
            continue
        out[finding] = {
            "threshold": round(fit.threshold, 6),
            "sensitivity": round(fit.sensitivity, 4),
            "specificity": round(fit.specificity, 4),
            "in_sample_sensitivity": round(fit.in_sample_sensitivity, 4),
            "in_sample_specificity": round(fit.in_sample_specificity, 4),
            "folds": fit.folds,
        }
    return out
