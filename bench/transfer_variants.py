"""Does anything cheap lift the pretrained model on Kermany's test folder? One config trained per
seed, then judged on the original test folder at each arm's validation-chosen threshold.

Arms (all from the same training run, so they differ only in what is done with its weights):

* each epoch's weights, and the one early stopping keeps (what ``radvigil train`` registers);
* WiSE-FT (Wortsman et al. 2022): the weights halfway between the head-only epoch and the last
  epoch, a robust-fine-tuning recipe for distribution shift;
* the average of the weights of every epoch after the head-only one (a short SWA);
* horizontal-flip test-time augmentation of the kept weights;
* AdaBN (Li et al. 2016): BatchNorm statistics re-estimated on 100 unlabelled test-folder
  images (5 draws; the mean and the range are printed), the site adaptation that needs no labels.

Run it in the home that holds the imported shared Kermany set (``radvigil data import
../shared/data/cxr/manifest.csv --where source_dataset=kermany_guangzhou_pediatric_cxr``):

    RADVIGIL_HOME=... .venv/bin/python -m bench.transfer_variants [--data ds-...]
        [--config configs/full.yaml] [--seeds 42 1 2] [--out bench/results]

Each seed is one full training (7-10 min for ``full`` on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np

from bench import common

FINDING = "pneumonia"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="latest", help="the imported shared Kermany version")
    parser.add_argument("--config", type=Path, default=common.REPO / "configs" / "full.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--adabn-images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    from radvigil.cli.context import catalog as home_catalog
    from radvigil.model.config import load_config
    from radvigil.model.dataset import load_split
    from radvigil.task import load_task

    base = load_config(args.config)
    task = load_task(base.task)
    size = base.input_size or task.input_size
    version = home_catalog().load(args.data)
    sets = {
        split: load_split(version, split, task, size, limit=limit)
        for split, limit in (("train", base.max_train_images), ("val", None), ("test", None))
    }
    payload = {"config": str(args.config), "data": version.id, "seeds": {}}
    for seed in args.seeds:  # one table per seed, written as soon as it is done
        cfg = base.model_copy(update={"seed": seed})
        start = time.perf_counter()
        model, snapshots, kept = train_with_snapshots(cfg, task, sets)
        common.console.print(f"seed {seed}: trained in {time.perf_counter() - start:.0f} s")
        arms = judge_arms(model, snapshots, kept, sets, task, args.adabn_images, seed)
        payload["seeds"][seed] = arms
        common.table(
            f"{args.config.name}, seed {seed}, on Kermany's test folder ({len(sets['test'])} "
            "images) at each arm's validation threshold (sensitivity >= 0.98 on validation; "
            "95 % bootstrap CIs)",
            ["arm", "threshold", "sensitivity", "specificity", "AUC"],
            [[name, *values] for name, values in arms.items()],
        )
        common.write_json(args.out, "transfer_variants.json", payload)


def train_with_snapshots(cfg, task, sets):
    """Train as ``radvigil train`` does, keeping every epoch's weights beside the chosen ones."""
    from radvigil.model import train as training

    snapshots: list[dict] = []

    class Recording(training.EarlyStopping):
        def update(self, epoch, metrics, model):
            snapshots.append(copy.deepcopy(model.state_dict()))
            return super().update(epoch, metrics, model)

    original = training.EarlyStopping
    training.EarlyStopping = Recording
    try:
        result = training.train(cfg, task, sets["train"], sets["val"])
    finally:
        training.EarlyStopping = original
    return result.model, snapshots, result.best_epoch


def judge_arms(model, snapshots, kept, sets, task, adabn_images, seed) -> dict[str, list]:
    """Every arm's [threshold, sensitivity, specificity, AUC] on the test folder, as text."""
    from radvigil.evaluation.result import Estimate
    from radvigil.model.train import average_states

    arms = {f"epoch {i}": _judge(model, s, sets, task) for i, s in enumerate(snapshots, 1)}
    arms[f"kept by early stopping (epoch {kept})"] = arms[f"epoch {kept}"]
    arms["WiSE-FT: halfway head-only -> last"] = _judge(
        model, average_states([snapshots[0], snapshots[-1]]), sets, task
    )
    if len(snapshots) > 2:
        arms["weight average of epochs 2..last"] = _judge(
            model, average_states(snapshots[1:]), sets, task
        )
    arms["kept + flip TTA"] = _judge(model, snapshots[kept - 1], sets, task, flip=True)
    rng = np.random.default_rng(seed)
    draws = [
        _judge(
            model,
            snapshots[kept - 1],
            sets,
            task,
            adapt=rng.choice(len(sets["test"]), adabn_images, replace=False),
        )
        for _ in range(5)
    ]
    # Five draws of adaptation images: the mean, with the range over draws in place of a CI.
    arms[f"kept + AdaBN on {adabn_images} test images (5 draws: mean, range)"] = [
        draws[0][0],
        *(
            Estimate.of(
                float(np.mean(v := [d[i].value for d in draws])), float(min(v)), float(max(v))
            )
            for i in (1, 2, 3)
        ),
    ]
    return {
        name: [threshold, *(common.ci_text(e) for e in estimates)]
        for name, (threshold, *estimates) in arms.items()
    }


def _judge(model, state, sets, task, *, flip=False, adapt=None) -> list:
    """Threshold on validation (the task's sensitivity target), then test figures with CIs."""
    from radvigil.evaluation.evaluator import evaluate
    from radvigil.metrics import threshold_for_sensitivity
    from radvigil.model.calibrate import fit_temperature, softmax

    model.load_state_dict(state)
    k = task.class_index(FINDING)
    val_logits = _logits(model, sets["val"].images, flip)
    temperature = fit_temperature(val_logits, sets["val"].targets)
    val_probs = softmax(val_logits, temperature)
    threshold = threshold_for_sensitivity(
        sets["val"].targets == k, val_probs[:, k], task.target_for(FINDING)
    )
    if adapt is not None:
        _adapt_batchnorm(model, sets["test"].images[adapt])
    probs = softmax(_logits(model, sets["test"].images, flip), temperature)
    labels = [task.classes[t] for t in sets["test"].targets]
    result = evaluate(labels, probs, task.classes, task.findings, {FINDING: threshold})
    f = result.finding(FINDING)
    return [threshold, f.sensitivity, f.specificity, f.auc]


def _logits(model, images, flip):
    from radvigil.model.train import predict_arrays

    logits = predict_arrays(model, images)[0]
    if flip:
        logits = (logits + predict_arrays(model, np.ascontiguousarray(images[:, :, ::-1]))[0]) / 2
    return logits


def _adapt_batchnorm(model, images) -> None:
    """Replace every BatchNorm's running statistics with those of ``images`` (cumulative)."""
    import torch

    from radvigil.model.preprocess import normalise

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), 50):
            model(torch.from_numpy(normalise(images[start : start + 50])[:, None]))
    model.eval()


if __name__ == "__main__":
    main()
