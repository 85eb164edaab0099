"""What closes the gap on a new acquisition batch: a trained model judged on held-out cases of
Kermany's test folder as trained, with its threshold re-chosen on a share of that batch's
labelled cases, and retrained with those cases (the closed loop's two repairs).

The labelled share is drawn by patient (seeded); every arm is judged on the same held-out
patients with 95 % bootstrap CIs. Run it in the home that holds the imported shared Kermany set
and the trained model (``radvigil data import ...`` then ``radvigil train --config
configs/full.yaml``):

    RADVIGIL_HOME=... .venv/bin/python -m bench.site_adaptation --model chest-pneumonia/1
        [--data ds-...] [--share 0.3] [--config configs/full.yaml] [--local-weight 4]
        [--no-retrain] [--out bench/results]

It saves the derived dataset version (named ``site-adaptation-<share>-<seed>``) in the home's
catalog, where it becomes ``latest``: name the original version with ``--data`` in later commands.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench import common

SITE = "kermany_test_folder_labelled"
FINDING = "pneumonia"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registry ref of the trained model")
    parser.add_argument("--data", default="latest", help="the imported shared Kermany version")
    parser.add_argument("--share", type=float, default=0.3, help="test-folder patients labelled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=common.REPO / "configs" / "full.yaml")
    parser.add_argument("--local-weight", type=int, default=4)
    parser.add_argument("--no-retrain", action="store_true")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    from radvigil.cli.context import catalog as home_catalog
    from radvigil.cli.context import registry as home_registry
    from radvigil.loop.evaluation import task_of

    catalog, registry = home_catalog(), home_registry()  # $RADVIGIL_HOME, as the CLI opens it
    model = registry.load(args.model)
    task = task_of(model)
    derived = label_site_share(catalog.load(args.data), args)
    adapted = catalog.load(catalog.save(derived, name=f"site-adaptation-{args.share}-{args.seed}"))
    counts = adapted.frame.groupby(["split", "source_dataset"]).size().to_dict()
    common.console.print(f"derived version {adapted.id}: {counts}")

    rows, payload = [], {"model": args.model, "data": adapted.id, "share": args.share, "arms": {}}
    base, site = scored(model, adapted)
    rows.append(judge("as trained (validation threshold)", base, None, payload, task))
    rows.append(judge("threshold re-chosen on labelled site cases", base, site, payload, task))
    if not args.no_retrain:
        from radvigil.loop.training import run_training
        from radvigil.model.config import load_config

        cfg = load_config(args.config)
        cfg = cfg.model_copy(update={"oversample": {SITE: args.local_weight}})
        start = time.perf_counter()
        outcome = run_training(
            cfg, adapted.id, catalog, registry, extra_tags={"radvigil.bench": "site_adaptation"}
        )
        payload["retrain_seconds"] = time.perf_counter() - start
        retrained, retrained_site = scored(
            registry.load(f"{outcome.name}/{outcome.version}"), adapted
        )
        label = f"retrained with them (x{args.local_weight}), validation threshold"
        rows.append(judge(label, retrained, None, payload, task))
        rows.append(
            judge(
                "retrained, threshold on labelled site cases",
                retrained,
                retrained_site,
                payload,
                task,
            )
        )
    common.table(
        f"{args.model} on {round((1 - args.share) * 100)} % of the test folder's patients "
        f"(held out), {args.share:.0%} labelled (95% bootstrap CIs)",
        ["arm", "threshold", "n", "sensitivity", "specificity", "AUC"],
        rows,
    )
    common.write_json(args.out, "site_adaptation.json", payload)


def label_site_share(version, args):
    """A derived version: ``share`` of the test folder's patients become labelled site cases
    (two thirds train, one third validation, their own source); the rest stay the test split."""
    from radvigil.data.manifest import DatasetVersion

    frame = version.frame.copy()
    test = frame["split"] == "test"
    patients = np.array(sorted(frame.loc[test, "patient_id"].astype(str).unique()))
    rng = np.random.default_rng(args.seed)
    rng.shuffle(patients)
    chosen = patients[: round(args.share * len(patients))]
    to_val = set(chosen[: len(chosen) // 3])
    ids = frame["patient_id"].astype(str)
    labelled = test & ids.isin(set(chosen))
    frame.loc[labelled, "source_dataset"] = SITE
    frame.loc[labelled, "split"] = np.where(ids[labelled].isin(to_val), "val", "train")
    return DatasetVersion(frame.reset_index(drop=True), version.root, dict(version.meta))


def scored(model, version):
    """The model's scores on the held-out test split and on every labelled site case."""
    from radvigil.data.manifest import DatasetVersion
    from radvigil.loop.evaluation import score

    site_rows = version.frame[version.frame["source_dataset"] == SITE].assign(split="test")
    site = DatasetVersion(site_rows.reset_index(drop=True), version.root)
    return score(model, version, "test"), score(model, site, "test")


def judge(label: str, held_out, site, payload: dict, task) -> list:
    """Evaluate on the held-out cases at the model's threshold, or at one re-chosen on ``site``
    for the task's sensitivity target."""
    from radvigil.evaluation.evaluator import evaluate
    from radvigil.metrics import threshold_for_sensitivity

    thresholds = dict(held_out.thresholds)
    if site is not None:
        positive = np.array([lab == FINDING for lab in site.labels], dtype=int)
        column = site.probs[:, task.class_index(FINDING)]
        target = task.target_for(FINDING)
        thresholds[FINDING] = threshold_for_sensitivity(positive, column, target)
    result = evaluate(
        held_out.labels, held_out.probs, task.classes, task.findings, thresholds, held_out.frame
    )
    f = result.finding(FINDING)
    payload["arms"][label] = f.model_dump()
    return [
        label,
        f.threshold,
        result.n_items,
        *(common.ci_text(e) for e in (f.sensitivity, f.specificity, f.auc)),
    ]


if __name__ == "__main__":
    main()
