"""How many labels a new site needs, and which: a learning curve over label budgets and
selection policies on Kermany's test-folder batch (issue #29).

The site's studies are split by patient (seed 0, the same for every cell) into a selection pool
and a held-out evaluation set. For each budget x policy x seed, the policy
(:mod:`radvigil.monitoring.label_selection`) picks which pool studies get labels and a repair
uses them; the held-out patients judge it. Three repairs (``--repairs``):

* ``head`` (default): a site head (:mod:`radvigil.model.site_head`), a logistic layer over the
  model's logit and the reduced embeddings fitted on the chosen labels (the network frozen),
  with the screening threshold fitted on the whole pool (labelled cases by their label,
  unlabelled ones by the head's probability), so policy-chosen labels are judged fairly;
* ``finetune``: the retraining arm. The shipped network continues from its own weights
  (:func:`radvigil.loop.retrain.warm_start_config`, all layers, no warm-up) on a fixed replay
  sample of its development training split plus the chosen site cases repeated
  ``--local-weight`` times, for ``--finetune-epochs`` epochs, calibrated on the development
  validation split; its threshold is fitted on the whole pool like the head's. Slow: one short
  training per cell;
* ``threshold``: the shipped scores, the threshold re-chosen on the chosen labels alone (site
  calibration without retraining). Biased for the uncertainty policies: their positives are the
  hard ones, so the threshold that catches them flags most normals. Kept for contrast.

With 0 labels both are the model as shipped, at its validation threshold. Printed per cell:
held-out sensitivity, specificity, AUC and ECE with 95 % bootstrap CIs (means over seeds), the
held-out specificity at the ROC point of sensitivity 0.97 (threshold-free), the audit-sample
estimate; then the labels each policy needs to reach specificity 0.70 and 0.80 at held-out
sensitivity >= 0.97.

Full run (the home holding the imported shared Kermany set and the ``full`` model):

    RADVIGIL_HOME=... .venv/bin/python -m bench.site_onboarding --model chest-pneumonia/1 \
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
REPAIRS = ("head", "finetune", "threshold")
TARGETS = (0.70, 0.80)
REPORTED_SENSITIVITY = 0.97


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=f"{common.MODEL_NAME}@champion")
    parser.add_argument("--data", default=None, help="dataset version whose test split is the site")
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 25, 50, 100, 150, 200])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--repairs", nargs="+", default=["head"], choices=REPAIRS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--holdout-share", type=float, default=0.5)
    parser.add_argument("--audit-share", type=float, default=0.1)
    parser.add_argument("--components", type=int, default=16, help="PCA size of the embeddings")
    parser.add_argument(
        "--strengths",
        type=float,
        nargs="+",
        default=[1.0, 10.0, 100.0, 1000.0],
        help="site head's L2 penalties; chosen per cell by 5-fold log loss on the labels",
    )
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument(
        "--replay", type=int, default=800, help="finetune: development training images replayed"
    )
    parser.add_argument("--finetune-epochs", type=int, default=2, help="finetune: epochs")
    parser.add_argument(
        "--local-weight", type=int, default=4, help="finetune: repeats of each site label"
    )
    parser.add_argument("--name", default="site_onboarding", help="stem of the JSON and PNG")
    parser.add_argument("--note", default="", help="what the results page should say first")
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
    pool_scores["reduced"], held_scores["reduced"] = reduce(
        pool_scores["embeddings"], held_scores["embeddings"], args.components
    )
    column = task.class_index(FINDING)
    validation_threshold = float(model.card.thresholds[FINDING])
    if "finetune" in args.repairs:
        args.finetuning = Finetuning.prepare(model, task, args, home_catalog, pool, held_out, root)

    cells: dict[tuple[str, int, str], list[dict]] = {}
    for repair in args.repairs:
        for budget in args.budgets:
            for policy in args.policies:
                for seed in args.seeds:
                    chosen = choose(
                        pool_scores, column, validation_threshold, budget, policy, seed, args
                    )
                    run = judge(
                        held_scores, pool_scores, chosen, repair, validation_threshold, task, args
                    )
                    cells.setdefault((repair, budget, policy), []).append(run)
    rows, payload = report(cells)
    payload.update(
        name=args.name,
        note=args.note,
        model=args.model,
        data=args.data or "bundled stream test-folder",
        n_pool=len(pool),
        n_held_out=len(held_out),
        held_out_positives=int(sum(lab == FINDING for lab in held_scores["labels"])),
        seeds=args.seeds,
        audit_share=args.audit_share,
        components=args.components,
        strengths=args.strengths,
        validation_threshold=validation_threshold,
        target_sensitivity=task.target_for(FINDING),
    )
    if "finetune" in args.repairs:
        payload["finetune"] = {
            "epochs": args.finetune_epochs,
            "local_weight": args.local_weight,
            "replay": args.replay,
        }
    common.table(
        f"{args.model}: held-out site patients; threshold fitted for sensitivity "
        f"{task.target_for(FINDING):.2f} (means over seeds {args.seeds}, 95% CIs)",
        [
            "repair",
            "labels",
            "policy",
            "threshold",
            "sensitivity",
            "specificity",
            "AUC",
            "ECE",
            "spec @ sens 0.97",
            "audit spec",
        ],
        rows,
    )
    reading = labels_to_reach(cells, args)
    common.table(
        f"labels needed for held-out specificity (sensitivity >= {REPORTED_SENSITIVITY})",
        ["repair", "policy", *(f"spec >= {t:.2f}" for t in TARGETS)],
        [
            [r, p, *(reading[r][p][f"{t:.2f}"] or "not reached" for t in TARGETS)]
            for r in args.repairs
            for p in args.policies
        ],
    )
    payload["labels_to_reach"] = reading
    common.write_json(args.out, f"{args.name}.json", payload)
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
    labels = task.targets(frame.to_dict("records"))
    return {
        "probs": np.concatenate(probs),
        "embeddings": np.concatenate(embeddings),
        "labels": labels,
        "positive": np.array([lab == FINDING for lab in labels], dtype=bool),
        "patients": frame["patient_id"].astype(str).to_numpy(),
        "frame": frame,
    }


def reduce(pool: np.ndarray, held: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on the pool's embeddings (unlabelled: no label leaks), applied to both, as
    the service stores reduced embeddings."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(components, *pool.shape), random_state=0).fit(pool)
    return pca.transform(pool), pca.transform(held)


def choose(pool, column, threshold, budget, policy, seed, args) -> list:
    """Which pool studies the policy labels with ``budget`` labels (audit share included)."""
    from radvigil.monitoring.label_selection import Budget, Candidates, select

    candidates = Candidates(
        ids=[str(i) for i in range(len(pool["labels"]))],
        margin=np.abs(pool["probs"][:, column] - threshold),
        embeddings=pool["reduced"],
    )
    return select(candidates, Budget.split(budget, args.audit_share), policy=policy, seed=seed)


def repaired(held, pool, chosen, repair, validation_threshold, task, args):
    """Held-out and pool probabilities of the finding after the repair, and its threshold."""
    from radvigil.metrics import threshold_for_sensitivity
    from radvigil.model.site_head import choose_strength, fit_site_head, pool_threshold

    column = task.class_index(FINDING)
    target = task.target_for(FINDING)
    index = np.array([c.index for c in chosen], dtype=int)
    positive = pool["positive"][index]
    base_pool, base_held = pool["probs"][:, column], held["probs"][:, column]
    if index.size == 0:
        return base_held, base_pool, validation_threshold
    if repair == "threshold":
        if not positive.any():
            return base_held, base_pool, validation_threshold
        return base_held, base_pool, threshold_for_sensitivity(positive, base_pool[index], target)
    if repair == "finetune":
        # Each pool case counts once toward the sensitivity the threshold must reach: a labelled
        # case by its label, an unlabelled one by the fine-tuned model's own probability. (The
        # site head's probabilities as that mass, tried on one seed, set lower thresholds.)
        held_p, pool_p = args.finetuning.run(index, positive, column)
        expected = pool_p.copy()
        expected[index] = positive
        return held_p, pool_p, pool_threshold(pool_p, expected, target)
    strength = choose_strength(
        base_pool[index],
        pool["reduced"][index],
        positive,
        args.strengths,
        reference=pool["reduced"],
    )
    head = fit_site_head(
        base_pool[index],
        pool["reduced"][index],
        positive,
        reference=pool["reduced"],
        strength=strength,
    )
    pool_p = head.predict(base_pool, pool["reduced"])
    expected = pool_p.copy()
    expected[index] = positive
    threshold = pool_threshold(pool_p, expected, target)
    return head.predict(base_held, held["reduced"]), pool_p, threshold


class Finetuning:
    """The arrays a warm-started fine-tune needs, decoded once for every cell."""

    def __init__(self, cfg, task, replay, val_set, pool, pool_images, held_images, local_weight):
        self.cfg, self.task, self.replay, self.val_set = cfg, task, replay, val_set
        self.pool, self.pool_images, self.held_images = pool, pool_images, held_images
        self.local_weight = local_weight

    @classmethod
    def prepare(cls, model, task, args, home_catalog, pool, held_out, root) -> Finetuning:
        """The shipped model's config continued from its weights; the development replay
        sample and validation split; the site's pool and held-out images at the input size."""
        from radvigil.loop.retrain import warm_start_config
        from radvigil.model.config import TrainConfig
        from radvigil.model.dataset import load_split, resized_images

        if args.data is None:
            raise SystemExit("--repairs finetune needs --data: the development splits replay")
        cfg = warm_start_config(
            TrainConfig.model_validate(model.card.config), model, args.finetune_epochs
        )
        size = cfg.input_size or task.input_size
        version = home_catalog().load(args.data)
        replay = load_split(version, "train", task, size, limit=args.replay, seed=0)
        val_set = load_split(version, "val", task, size)
        common.console.print(
            f"finetune: {len(replay)} development images replayed, {len(val_set)} to calibrate, "
            f"{args.finetune_epochs} epoch(s), site labels x{args.local_weight}"
        )
        return cls(
            cfg,
            task,
            replay,
            val_set,
            pool,
            resized_images(root, list(pool["path"]), size),
            resized_images(root, list(held_out["path"]), size),
            args.local_weight,
        )

    def run(
        self, index: np.ndarray, positive: np.ndarray, column: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Held-out and pool probabilities of the finding after fine-tuning on the pool cases
        ``index`` with labels ``positive`` (a binary task: the other class is the rest)."""
        import pandas as pd

        from radvigil.model.calibrate import softmax
        from radvigil.model.dataset import ArraySet
        from radvigil.model.train import predict_arrays, train

        repeated = np.repeat(index, self.local_weight)
        targets = np.where(positive, column, 1 - column).astype(np.int64)
        train_set = ArraySet(
            np.concatenate([self.replay.images, self.pool_images[repeated]]),
            np.concatenate([self.replay.targets, np.repeat(targets, self.local_weight)]),
            pd.concat([self.replay.frame, self.pool.iloc[repeated]], ignore_index=True),
        )
        result = train(self.cfg, self.task, train_set, self.val_set)
        out = []
        for images in (self.held_images, self.pool_images):
            logits, _ = predict_arrays(result.model, images)
            out.append(softmax(logits, result.temperature)[:, column])
        return out[0], out[1]


def judge(held, pool, chosen, repair, validation_threshold, task, args) -> dict:
    """Held-out rates of the repaired scores at the repair's threshold; the threshold-free
    specificity at held-out sensitivity 0.97; the audit sample's own estimate."""
    from radvigil.evaluation.evaluator import evaluate
    from radvigil.evaluation.result import EvaluationOptions
    from radvigil.metrics import threshold_for_sensitivity
    from radvigil.monitoring.label_selection import LabelledCase, audit_performance

    held_p, pool_p, threshold = repaired(
        held, pool, chosen, repair, validation_threshold, task, args
    )
    probs = held["probs"].copy()
    column = task.class_index(FINDING)
    probs[:, column] = held_p
    probs[:, 1 - column] = 1.0 - held_p  # a binary task: the other class takes the rest
    result = evaluate(
        held["labels"],
        probs,
        task.classes,
        task.findings,
        {FINDING: threshold},
        held["frame"],
        options=EvaluationOptions(n_resamples=args.resamples, subgroup_columns=[]),
    )
    f = result.finding(FINDING)
    positive = held["positive"]
    cut = threshold_for_sensitivity(positive, held_p, REPORTED_SENSITIVITY)
    _, audit_spec = audit_performance(
        [
            LabelledCase(
                bool(pool["positive"][c.index]), bool(pool_p[c.index] >= threshold), c.policy
            )
            for c in chosen
        ]
    )
    return {
        "threshold": threshold,
        "labels": len(chosen),
        "audit": sum(c.audit for c in chosen),
        "positives_labelled": int(sum(pool["positive"][c.index] for c in chosen)),
        "spec_at_sens_097": float(np.mean(held_p[~positive] < cut)),
        "audit_specificity": {"value": audit_spec.value, "n": audit_spec.n},
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


def report(cells) -> tuple[list, dict]:
    rows, out = [], {"cells": []}
    for (repair, budget, policy), runs in cells.items():
        means = {
            k: {p: _mean(runs, k, p) for p in ("value", "low", "high")}
            for k in ("sensitivity", "specificity", "auc", "ece")
        }
        means["spec_at_sens_097"] = {"value": _mean(runs, "spec_at_sens_097")}
        means["audit_specificity"] = {"value": _mean(runs, "audit_specificity")}
        rows.append(
            [
                repair,
                budget,
                policy,
                _mean(runs, "threshold"),
                *(_ci(means[k]) for k in ("sensitivity", "specificity", "auc", "ece")),
                means["spec_at_sens_097"]["value"],
                means["audit_specificity"]["value"],
            ]
        )
        out["cells"].append(
            {"repair": repair, "budget": budget, "policy": policy, "means": means, "runs": runs}
        )
    return rows, out


def _ci(m: dict) -> str:
    if m["value"] is None:
        return "-"
    return f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def labels_to_reach(cells, args) -> dict:
    """Per repair, policy and target, the smallest budget whose mean held-out specificity
    reaches the target with mean held-out sensitivity >= 0.97 (None: no budget does)."""
    reading: dict = {}
    for repair in args.repairs:
        for policy in args.policies:
            per = reading.setdefault(repair, {}).setdefault(policy, {})
            for target in TARGETS:
                reached = [
                    b
                    for (r, b, p), runs in sorted(cells.items())
                    if (r, p) == (repair, policy)
                    and (_mean(runs, "specificity") or 0) >= target
                    and (_mean(runs, "sensitivity") or 0) >= REPORTED_SENSITIVITY
                ]
                per[f"{target:.2f}"] = min(reached) if reached else None
    return reading


def plot(cells, args, target_sensitivity: float) -> Path:
    """Held-out specificity against labels, one curve per repair and policy (mean CI band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for repair in args.repairs:
        style = {"head": "-", "finetune": "-.", "threshold": "--"}[repair]
        for policy in args.policies:
            budgets = sorted(b for r, b, p in cells if (r, p) == (repair, policy))
            runs = [cells[(repair, b, policy)] for b in budgets]
            for ax, key in zip(axes, ("specificity", "auc"), strict=True):
                line = ax.plot(
                    budgets,
                    [_mean(r, key) for r in runs],
                    style,
                    marker="o",
                    label=f"{policy} ({repair})",
                )[0]
                ax.fill_between(
                    budgets,
                    [_mean(r, key, "low") for r in runs],
                    [_mean(r, key, "high") for r in runs],
                    alpha=0.1,
                    color=line.get_color(),
                )
    for target in TARGETS:
        axes[0].axhline(target, color="grey", linestyle=":", linewidth=1)
    axes[1].axhline(0.97, color="grey", linestyle=":", linewidth=1)
    axes[0].set_ylabel(f"held-out specificity (threshold for sensitivity {target_sensitivity:.2f})")
    axes[1].set_ylabel("held-out AUC")
    for ax in axes:
        ax.set_xlabel("labels spent at the site")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{args.model} on {args.data or 'the bundled test-folder stream'}", fontsize=9)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    common.console.print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
