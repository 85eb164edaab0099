"""Ray Train and Ray Tune against in-process training, on real bundled images, on this machine.

Training: the same config (``configs/fast.yaml`` by default, on the bundled Kermany train and
validation splits) is trained in process (:func:`radvigil.model.train.train`) and on Ray Train
(:func:`radvigil.model.distributed.train_ray`) with 1 and ``--workers`` workers. Each backend
runs twice, for ``--short`` and ``--long`` epochs with early stopping off, so

* seconds per epoch = (wall(long) - wall(short)) / (long - short), start-up cancelling out;
* fixed overhead = wall(short) - short x seconds per epoch (Ray: starting a local instance,
  placing workers, moving the data into the object store, checkpoints, shutting down);
* train images/s = bundled train images / seconds per epoch (validation pass included).

Tuning: ``radvigil.model.tuning.tune_hyperparameters`` with the shipped search space
(``configs/tune.yaml``) for ``--trials`` trials of ``--tune-epochs`` epochs, 1 CPU each:
wall time, trials per minute, and the best validation macro-F1 next to the untuned config's.

    .venv/bin/python -m bench.ray_scaleout [--workers 2] [--short 1 --long 3] [--trials 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench import common


def _wall(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def time_backends(cfg, task, train_set, val_set, workers: list[int], short: int, long: int):
    from radvigil.model.distributed import train_ray
    from radvigil.model.train import train

    rows = []
    storage = tempfile.mkdtemp(prefix="radvigil-bench-ray-")
    for backend in ["local", *[f"ray x{w}" for w in workers]]:
        walls, best = {}, None
        for epochs in (short, long):
            run_cfg = cfg.model_copy(update={"epochs": epochs, "patience": epochs + 1})
            if backend == "local":
                seconds, result = _wall(lambda c=run_cfg: train(c, task, train_set, val_set))
            else:
                n = int(backend.split("x")[1])
                seconds, result = _wall(
                    lambda c=run_cfg, n=n, e=epochs: train_ray(
                        c,
                        task,
                        train_set,
                        val_set,
                        workers=n,
                        storage=storage,
                        run_name=f"bench-{n}-{e}-{time.time_ns()}",
                    )
                )
            walls[epochs] = seconds
            best = max(row["macro_f1"] for row in result.history)
            common.console.print(f"  {backend}: {epochs} epochs in {seconds:.1f} s")
        per_epoch = (walls[long] - walls[short]) / (long - short)
        rows.append(
            {
                "backend": backend,
                "wall_short_s": walls[short],
                "wall_long_s": walls[long],
                "seconds_per_epoch": per_epoch,
                "overhead_s": walls[short] - short * per_epoch,
                "train_images_per_s": len(train_set) / per_epoch,
                "best_val_macro_f1_long": best,
            }
        )
    return rows


def time_tuning(cfg, task, train_set, val_set, trials: int, epochs: int) -> dict:
    from radvigil.model.train import train
    from radvigil.model.tuning import load_space, tune_hyperparameters

    run_cfg = cfg.model_copy(update={"epochs": epochs})
    space = load_space(common.REPO / "configs" / "tune.yaml", run_cfg)
    untuned = max(r["macro_f1"] for r in train(run_cfg, task, train_set, val_set).history)
    seconds, result = _wall(
        lambda: tune_hyperparameters(
            run_cfg,
            task,
            train_set,
            val_set,
            space,
            trials=trials,
            storage=tempfile.mkdtemp(prefix="radvigil-bench-tune-"),
            run_name=f"bench-tune-{time.time_ns()}",
        )
    )
    return {
        "trials": trials,
        "epochs_per_trial": epochs,
        "epochs_run": sum(t.epochs for t in result.trials),
        "wall_s": seconds,
        "trials_per_minute": trials / seconds * 60,
        "best_val_macro_f1": result.best.best,
        "untuned_val_macro_f1": untuned,
        "best_overrides": result.best.overrides,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=common.FAST_CONFIG)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--short", type=int, default=1, help="epochs of the short run")
    parser.add_argument("--long", type=int, default=3, help="epochs of the long run")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--tune-epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local instance
    from radvigil.data.importers import from_csv
    from radvigil.model.config import load_config
    from radvigil.model.dataset import load_split
    from radvigil.task import load_task

    cfg = load_config(args.config)
    task = load_task(cfg.task)
    size = cfg.input_size or task.input_size
    version = from_csv(common.BUNDLED / "manifest.csv").version
    train_set = load_split(version, "train", task, size)
    val_set = load_split(version, "val", task, size)
    common.console.print(common.machine_line())
    common.console.print(
        f"{args.config.name}: {cfg.backbone} {size}px batch {cfg.batch_size}; "
        f"{len(train_set)} train / {len(val_set)} val bundled images"
    )
    rows = time_backends(cfg, task, train_set, val_set, args.workers, args.short, args.long)
    tuning = time_tuning(cfg, task, train_set, val_set, args.trials, args.tune_epochs)
    common.table(
        f"Training backends ({args.config.name}, epochs {args.short} and {args.long}, "
        "validation pass included)",
        [
            "backend",
            "s/epoch",
            "train img/s",
            "fixed overhead s",
            "wall short",
            "wall long",
            f"best val macro-F1 ({args.long} ep)",
        ],
        [
            (
                r["backend"],
                r["seconds_per_epoch"],
                r["train_images_per_s"],
                r["overhead_s"],
                r["wall_short_s"],
                r["wall_long_s"],
                r["best_val_macro_f1_long"],
            )
            for r in rows
        ],
    )
    common.table(
        f"Ray Tune + Optuna ({args.trials} trials x {args.tune_epochs} epochs, 1 CPU each, ASHA)",
        ["trials", "epochs run", "wall s", "trials/min", "best val macro-F1", "untuned"],
        [
            (
                tuning["trials"],
                tuning["epochs_run"],
                tuning["wall_s"],
                tuning["trials_per_minute"],
                tuning["best_val_macro_f1"],
                tuning["untuned_val_macro_f1"],
            )
        ],
    )
    common.console.print(f"best trial: {tuning['best_overrides']}")
    common.write_json(args.out, "ray_scaleout.json", {"backends": rows, "tuning": tuning})


if __name__ == "__main__":
    main()
