"""How many labels a new site needs, and which: a learning curve over label budgets and
selection policies on Kermany's test-folder batch (issue #29).

The site's studies are split by patient (seed 0, the same for every cell) into a selection pool
and a held-out evaluation set. For each budget x policy x seed, the policy
(:mod:`radvigil.monitoring.label_selection`) picks which pool studies get labels; the repair
re-chooses the operating threshold on those labels for the sensitivity target (the cheap repair:
site calibration without retraining); the held-out patients judge it. Printed per cell: held-out
sensitivity, specificity, AUC and ECE with 95 % bootstrap CIs (means over seeds), then the labels
each policy needs to reach specificity 0.70 and 0.80 at sensitivity >= 0.97.

Full run (the home holding the imported shared Kermany set and the ``full`` champion):

    RADVIGIL_HOME=... .venv/bin/python -m bench.site_onboarding --model chest-pneumonia@champion \
        --data ds-... --budgets 0 25 50 100 150 200 --seeds 0 1 2

Without ``--data`` the site is the bundled stream's test-folder studies (a smoke run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench import common

FINDING = "pneumonia"
POLICIES = ("random", "uncertainty", "combined")
TARGETS = (0.70, 0.80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=f"{common.MODEL_NAME}@champion")
    parser.add_argument("--data", default=None, help="dataset version whose test split is the site")
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 25, 50, 100, 150, 200])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--holdout-share", type=float, default=0.5)
    parser.add_argument("--audit-share", type=float, default=0.1)
    parser.add_argument("--components", type=int, default=16, help="PCA size of the embeddings")
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    from radvigil.cli.context import catalog as home_catalog
    from radvigil.cli.context import registry as home_registry
    from radvigil.loop.evaluation import task_of

    model = home_registry().load(args.model)
    task = task_of(model)
    frame, root = site_frame(args.data, home_catalog)
    pool, held_out = split_by_patient(frame, args.holdout_share)
    common.console.print(
        f"site: {len(frame)} studies; pool {len(pool)}, held out {len(held_out)} (by patient)"
    )
    pool_scores = scored(model, pool, root, task)
    held_scores = scored(model, held_out, root, task)
    embeddings = reduce(pool_scores["embeddings"], args.components)
    column = task.class_index(FINDING)
    validation_threshold = float(model.card.thresholds[FINDING])

    cells: dict[tuple[int, str], list[dict]] = {}
    for budget in args.budgets:
        for policy in args.policies:
            for seed in args.seeds:
                chosen = choose(
                    pool_scores,
                    embeddings,
                    column,
                    validation_threshold,
                    budget,
                    policy,
                    seed,
                    args,
                )
                cells.setdefault((budget, policy), []).append(
                    judge(
                        held_scores, pool_scores, chosen, column, validation_threshold, task, args
                    )
                )
    rows, payload = report(cells, args)
    payload.update(
        model=args.model, data=args.data or "bundled stream test-folder", n_pool=len(pool)
    )
    payload["n_held_out"] = len(held_out)
    common.table(
        f"{args.model}: held-out site patients, threshold re-chosen on the labels for "
        f"sensitivity {task.target_for(FINDING):.2f} (means over seeds {args.seeds}, 95% CIs)",
        ["labels", "policy", "threshold", "sensitivity", "specificity", "AUC", "ECE"],
        rows,
    )
    reading = labels_to_reach(cells, args)
    common.table(
        "labels needed for held-out specificity (sensitivity >= 0.97)",
        ["policy", *(f"spec >= {t:.2f}" for t in TARGETS)],
        [[p, *(reading[p][f"{t:.2f}"] or "not reached" for t in TARGETS)] for p in args.policies],
    )
    payload["labels_to_reach"] = reading
    common.write_json(args.out, "site_onboarding.json", payload)
    plot(cells, args, task.target_for(FINDING))


def site_frame(data: str | None, home_catalog):
    """The new site's studies and the folder their paths are relative to."""
    version = common.site_version() if data is None else home_catalog().load(data).split("test")
    return version.frame.reset_index(drop=True), version.root


def split_by_patient(frame, holdout_share: float):
    """Pool and held-out studies, no patient in both (seed 0: the same split for every cell)."""
    patients = np.array(sorted(frame["patient_id"].astype(str).unique()))
    np.random.default_rng(0).shuffle(patients)
    held = set(patients[: round(holdout_share * len(patients))])
    in_held = frame["patient_id"].astype(str).isin(held)
    return frame[~in_held].reset_index(drop=True), frame[in_held].reset_index(drop=True)


def scored(model, frame, root: Path, task) -> dict:
    """Probabilities, embeddings, labels and patients of ``frame``'s studies, run once."""
    from radvigil.data.io import read_image
    from radvigil.model.engine import OnnxEngine

    engine = OnnxEngine(model.onnx_path)
    probs, embeddings = [], []
    paths = [root / p for p in frame["path"]]
    for i in range(0, len(paths), 32):
        p, e = engine.predict([read_image(path).pixels for path in paths[i : i + 32]])
        probs.append(p)
        embeddings.append(e.reshape(len(p), -1))
    return {
        "probs": np.concatenate(probs),
        "embeddings": np.concatenate(embeddings),
        "labels": task.targets(frame.to_dict("records")),
        "patients": frame["patient_id"].astype(str).to_numpy(),
        "frame": frame,
    }


def reduce(embeddings: np.ndarray, components: int) -> np.ndarray:
    """PCA of the pool's embeddings, as the service stores reduced embeddings."""
    from sklearn.decomposition import PCA

    k = min(components, *embeddings.shape)
    return PCA(n_components=k, random_state=0).fit_transform(embeddings)


def choose(pool, embeddings, column, threshold, budget, policy, seed, args) -> list:
    """Which pool studies the policy labels with ``budget`` labels (audit share included)."""
    from radvigil.monitoring.label_selection import Budget, Candidates, select

    candidates = Candidates(
        ids=[str(i) for i in range(len(pool["labels"]))],
        margin=np.abs(pool["probs"][:, column] - threshold),
        embeddings=embeddings,
    )
    return select(candidates, Budget.split(budget, args.audit_share), policy=policy, seed=seed)


def judge(held, pool, chosen, column, validation_threshold, task, args) -> dict:
    """Held-out rates at the threshold fitted on the chosen labels (the validation threshold
    when they hold no positive case); with the cross-fitted estimate from the labels alone."""
    from radvigil.evaluation.crossfit import crossfit_threshold
    from radvigil.evaluation.evaluator import evaluate
    from radvigil.evaluation.result import EvaluationOptions
    from radvigil.metrics import threshold_for_sensitivity

    target = task.target_for(FINDING)
    index = np.array([c.index for c in chosen], dtype=int)
    positive = np.array([lab == FINDING for lab in np.asarray(pool["labels"])[index]], dtype=bool)
    scores = pool["probs"][index, column]
    threshold, honest = validation_threshold, None
    if positive.any():
        threshold = threshold_for_sensitivity(positive, scores, target)
        if np.unique(pool["patients"][index]).size >= 5 and positive.sum() >= 5:
            honest = crossfit_threshold(
                positive, scores, pool["patients"][index], target_sensitivity=target
            ).specificity
    thresholds = {FINDING: threshold}
    result = evaluate(
        held["labels"],
        held["probs"],
        task.classes,
        task.findings,
        thresholds,
        held["frame"],
        options=EvaluationOptions(n_resamples=args.resamples),
    )
    f = result.finding(FINDING)
    return {
        "threshold": threshold,
        "labels": len(index),
        "audit": sum(c.audit for c in chosen),
        "crossfit_specificity": honest,
        **{
            name: {"value": e.value, "low": e.low, "high": e.high}
            for name, e in (
                ("sensitivity", f.sensitivity),
                ("specificity", f.specificity),
                ("auc", f.auc),
                ("ece", f.ece),
            )
        },
    }


def _mean(runs: list[dict], key: str, part: str = "value") -> float | None:
    values = [r[key][part] if isinstance(r[key], dict) else r[key] for r in runs]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def report(cells, args) -> tuple[list, dict]:
    rows, out = [], {"cells": []}
    for (budget, policy), runs in cells.items():
        means = {
            k: {p: _mean(runs, k, p) for p in ("value", "low", "high")}
            for k in ("sensitivity", "specificity", "auc", "ece")
        }
        rows.append(
            [
                budget,
                policy,
                _mean(runs, "threshold"),
                *(_ci(means[k]) for k in ("sensitivity", "specificity", "auc", "ece")),
            ]
        )
        out["cells"].append({"budget": budget, "policy": policy, "means": means, "runs": runs})
    return rows, out


def _ci(m: dict) -> str:
    if m["value"] is None:
        return "-"
    return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def labels_to_reach(cells, args) -> dict:
    """Per policy and target, the smallest budget whose mean held-out specificity reaches the
    target with mean sensitivity >= 0.97 (None: no budget in the grid does)."""
    reading = {}
    for policy in args.policies:
        reading[policy] = {}
        for target in TARGETS:
            reached = [
                b
                for (b, p), runs in sorted(cells.items())
                if p == policy
                and (_mean(runs, "specificity") or 0) >= target
                and (_mean(runs, "sensitivity") or 0) >= 0.97
            ]
            reading[policy][f"{target:.2f}"] = min(reached) if reached else None
    return reading


def plot(cells, args, target_sensitivity: float) -> Path:
    """Held-out specificity against labels, one curve per policy (with the mean CI band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for policy in args.policies:
        budgets = sorted(b for b, p in cells if p == policy)
        value = [_mean(cells[(b, policy)], "specificity") for b in budgets]
        low = [_mean(cells[(b, policy)], "specificity", "low") for b in budgets]
        high = [_mean(cells[(b, policy)], "specificity", "high") for b in budgets]
        ax.plot(budgets, value, marker="o", label=policy)
        ax.fill_between(budgets, low, high, alpha=0.15)
    for target in TARGETS:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("labels spent at the site")
    ax.set_ylabel(f"held-out specificity (threshold for sensitivity {target_sensitivity:.2f})")
    ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "site_onboarding.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    common.console.print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
