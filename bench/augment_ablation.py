"""Augmentation ablation (the seed report's method): the same config trained with no
augmentation, each augmentation alone, and all of them, on the same seeds, judged on validation,
the held-out test split of the same acquisition batch, and the site's other batch (the real shift).

Every arm is a registered model version (tagged ``radvigil.ablation.arm``) trained on the bundled
data; AUC and sensitivity/specificity are at each version's own operating threshold (chosen on
validation for the task's sensitivity target), with 95 % bootstrap CIs. Writes a table, JSON and a
PNG plot.

    .venv/bin/python -m bench.augment_ablation [--config configs/demo.yaml] [--seeds 42 7]
        [--arms none,hflip,...] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common

# Each arm switches on the named augmentations at these strengths; everything else is off.
# "all" is every augmentation of the config's default recipe plus the tone curve.
OFF = {
    "brightness": 0.0,
    "contrast": 0.0,
    "hflip": 0.0,
    "clahe": 0.0,
    "rotation": 0.0,
    "crop_scale": 1.0,
    "gamma": 0.0,
    "levels": 0.0,
}
ON = {
    "brightness": {"brightness": 0.2},
    "contrast": {"contrast": 0.2},
    "hflip": {"hflip": 0.5},
    "clahe": {"clahe": 0.2},
    "rotation": {"rotation": 10.0},
    "crop": {"crop_scale": 0.85},
    "tone": {"gamma": 0.5, "levels": 0.12},
}
ARMS = ["none", *ON, "all"]
SETS = ("validation", "test split", "site batch")


def arm_augment(arm: str) -> dict[str, float]:
    """The AugmentConfig fields of one arm."""
    if arm == "none":
        return dict(OFF)
    if arm == "all":
        return {**OFF, **{k: v for on in ON.values() for k, v in on.items()}}
    return {**OFF, **ON[arm]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=common.REPO / "configs" / "demo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {ARMS}")
    parser.add_argument("--quick", action="store_true", help="one short epoch per arm (smoke)")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {ARMS}")
    common.quiet_libraries()
    root = Path(tempfile.mkdtemp(prefix="radvigil-ablation-"))
    try:
        runs = ablate(args.config, arms, args.seeds, args.quick, common.open_home(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = summary_rows(runs, arms, args.seeds)
    common.table(
        f"Augmentation ablation: {args.config.name} on the bundled data, seeds {args.seeds} "
        "(AUC and sensitivity/specificity at each version's validation-chosen threshold; "
        "95% bootstrap CI of the first seed, mean over seeds in brackets)",
        ["arm", "train s", *[f"{s} {m}" for s in SETS for m in ("AUC", "sens", "spec")]],
        rows,
    )
    common.write_json(args.out, "augment_ablation.json", {"config": str(args.config), "runs": runs})
    plot(runs, arms, args.out / "augment_ablation.png")


def ablate(config: Path, arms: list[str], seeds: list[int], quick: bool, home) -> list[dict]:
    """Train and evaluate every (arm, seed); one record per run."""
    from radvigil.loop.evaluation import evaluate_version
    from radvigil.loop.training import run_training
    from radvigil.model.config import AugmentConfig, load_config

    base = load_config(config)
    sets = {
        "validation": (home.catalog.load(home.data_version), "val"),
        "test split": (home.catalog.load(home.data_version), "test"),
        "site batch": (common.site_version(), "test"),
    }
    runs = []
    for seed in seeds:
        for arm in arms:
            update = {"seed": seed, "augment": AugmentConfig(**arm_augment(arm))}
            if quick:
                update |= {"epochs": 1, "max_train_images": 128, "unfreeze_epochs": 0}
            cfg = base.model_copy(update=update)
            start = time.perf_counter()
            outcome = run_training(
                cfg,
                home.data_version,
                home.catalog,
                home.registry,
                extra_tags={"radvigil.ablation.arm": arm},
            )
            seconds = time.perf_counter() - start
            model = home.registry.load(f"{outcome.name}/{outcome.version}")
            record = {"arm": arm, "seed": seed, "version": outcome.version, "train_s": seconds}
            for label, (data, split) in sets.items():
                result, _ = evaluate_version(model, data, split)
                f = result.finding("pneumonia")
                record[label] = {
                    "n": result.n_items,
                    "threshold": f.threshold,
                    **{m: _estimate(getattr(f, m)) for m in ("auc", "sensitivity", "specificity")},
                }
            runs.append(record)
            common.console.print(
                f"{arm:>10} seed {seed}: {seconds:.0f} s, site AUC "
                f"{record['site batch']['auc']['value']:.3f}"
            )
    return runs


def summary_rows(runs: list[dict], arms: list[str], seeds: list[int]) -> list[list]:
    """One row per arm: the first seed's estimate with its CI, and the mean over seeds."""
    rows = []
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        first = next(r for r in mine if r["seed"] == seeds[0])
        row = [arm, float(np.mean([r["train_s"] for r in mine]))]
        for label in SETS:
            for metric in ("auc", "sensitivity", "specificity"):
                row.append(_cell(first[label][metric], [r[label][metric]["value"] for r in mine]))
        rows.append(row)
    return rows


def plot(runs: list[dict], arms: list[str], path: Path) -> None:
    """AUC and specificity per arm and set: the first seed with its CI, each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(arms))
    for ax, metric in zip(axes, ("auc", "specificity"), strict=True):
        for j, label in enumerate(SETS):
            offset = (j - 1) * 0.25
            for i, arm in enumerate(arms):
                mine = [r[label][metric] for r in runs if r["arm"] == arm]
                values = [m["value"] for m in mine]
                ax.scatter([i + offset] * len(values), values, s=12, color=f"C{j}", alpha=0.6)
                low, high = mine[0]["low"], mine[0]["high"]
                if low is not None:
                    ax.vlines(i + offset, low, high, color=f"C{j}", lw=1.5)
            ax.plot([], [], "o", color=f"C{j}", label=label)
        ax.set_xticks(x, arms, rotation=30)
        ax.set_ylabel(metric if metric == "specificity" else "AUC")
        ax.set_title(f"{metric} at the validation-chosen threshold" if metric != "auc" else "AUC")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    common.console.print(f"wrote {path}")


def _estimate(estimate) -> dict:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high}


def _cell(first: dict, values: list[float | None]) -> str:
    if first["value"] is None:
        return "-"
    text = f"{first['value']:.3f}"
    if first["low"] is not None:
        text += f" ({first['low']:.2f}-{first['high']:.2f})"
    known = [v for v in values if v is not None]
    if len(known) > 1:
        text += f" [{np.mean(known):.3f}]"
    return text


if __name__ == "__main__":
    main()
