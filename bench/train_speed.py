"""Training and evaluation speed of the shipped configs on this machine, with real images.

For each config (``configs/fast.yaml`` and ``configs/full.yaml`` by default) the bundled
Kermany train split (703 real JPEGs) is decoded and resized to the config's input size, then
radvigil's own training loop (:func:`radvigil.model.train.train`: augmentation, normalisation,
forward, backward, gradient clipping, AdamW, schedule) runs until a fixed number of batches
is done; a :class:`~radvigil.model.train.TrainObserver` timestamps every batch and stops the
run. The first ``--warmup`` batches are dropped (allocator and kernel warm-up). Measured:

* train images/s: images in the timed batches / their wall time (augmentation included);
* seconds per epoch: extrapolated from that rate to the bundled train split (703 images) and to
  the full shared Kermany train split (4,699), training steps only and with the validation pass
  (262 / 517 images at the eval rate of PyTorch, which is what the loop uses);
* eval images/s: a model of the same backbone exported to ONNX by radvigil's exporter, run by
  ONNX Runtime (fp32, and static int8 where the config quantises) and by eager PyTorch in
  inference mode, batch 64, preprocessing included, best of 3 passes over the validation images.

``fast`` is timed over one whole bundled epoch (22 batches); ``full`` over 20 batches
(``--steps``). Numbers on a shared 2-core machine move with its load: the load average is printed
with every table. When other processes keep the cores busy, torch's OpenMP threads wait on each
other and a run can be an order of magnitude slower; ``--torch-threads 1`` shows whether that is
the case.

    .venv/bin/python -m bench.train_speed [--steps 20] [--configs configs/fast.yaml ...] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common

FULL_TRAIN_IMAGES = 4699  # shared Kermany train split (see /work/shared/data/README.md)
FULL_VAL_IMAGES = 517


class _Enough(Exception):
    """Raised by the clock to end training once enough batches are timed."""


class BatchClock:
    """A TrainObserver that timestamps every batch and stops after ``stop_after`` batches."""

    def __init__(self, stop_after: int) -> None:
        self.stop_after = stop_after
        self.stamps: list[float] = []

    def epoch_started(self, epoch: int, batches: int) -> None:
        if not self.stamps:
            self.stamps.append(time.perf_counter())

    def batch_done(self, loss: float) -> None:
        self.stamps.append(time.perf_counter())
        if len(self.stamps) - 1 >= self.stop_after:
            raise _Enough

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


def batch_sizes(n_images: int, batch: int, count: int) -> list[int]:
    """Sizes of the first ``count`` batches of epochs over ``n_images`` (last one may be short)."""
    per_epoch = [min(batch, n_images - s) for s in range(0, n_images, batch)]
    return [per_epoch[i % len(per_epoch)] for i in range(count)]


def time_training(cfg, task, train_set, val_set, steps: int, warmup: int) -> dict:
    from radvigil.model.train import train

    clock = BatchClock(warmup + steps)
    with contextlib.suppress(_Enough):
        train(cfg, task, train_set, val_set, clock)
    durations = np.diff(clock.stamps)
    sizes = batch_sizes(len(train_set), cfg.batch_size, len(durations))
    timed_images = sum(sizes[warmup:])
    timed_seconds = float(durations[warmup:].sum())
    return {
        "timed_batches": len(durations) - warmup,
        "warmup_batches": warmup,
        "timed_images": timed_images,
        "timed_seconds": timed_seconds,
        "train_images_per_s": timed_images / timed_seconds,
        "median_batch_ms": float(np.median(durations[warmup:]) * 1000),
    }


def time_eval(cfg, task, images: np.ndarray, size: int, repeat: int) -> dict:
    import torch

    from radvigil.model.engine import OnnxEngine
    from radvigil.model.export import export_onnx, quantize
    from radvigil.model.network import build_classifier
    from radvigil.model.preprocess import normalise
    from radvigil.model.train import predict_arrays

    torch.manual_seed(0)
    model = build_classifier(cfg.backbone, len(task.classes)).eval()
    batch = 64
    out: dict[str, float | None] = {"eval_batch": batch, "eval_images": len(images)}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, 1.0, size, Path(tmp) / "model.onnx")
        paths = {"ort_fp32": onnx_path}
        if cfg.quantize:
            calibration = normalise(images[:64])[:, None]
            paths["ort_int8"] = quantize(onnx_path, calibration, Path(tmp) / "model.int8.onnx")
        for name, path in paths.items():
            engine = OnnxEngine(path, threads=common.machine()["nproc"])
            engine.predict(list(images[:batch]))  # warm-up

            def run(engine=engine) -> None:
                for s in range(0, len(images), batch):
                    engine.predict(list(images[s : s + batch]))

            seconds, _ = common.timed(run, repeat)
            out[f"{name}_images_per_s"] = len(images) / seconds
    out.setdefault("ort_int8_images_per_s", None)
    predict_arrays(model, images[:batch], batch)  # warm-up
    seconds, _ = common.timed(lambda: predict_arrays(model, images, batch), repeat)
    out["torch_images_per_s"] = len(images) / seconds
    return out


def bench_config(path: Path, version, steps: int | None, warmup: int, eval_images: int) -> dict:
    from radvigil.model.config import load_config
    from radvigil.model.dataset import load_split
    from radvigil.task import load_task

    cfg = load_config(path)
    task = load_task(cfg.task)
    size = cfg.input_size or task.input_size
    start = time.perf_counter()
    train_set = load_split(version, "train", task, size)
    val_set = load_split(version, "val", task, size)
    load_seconds = time.perf_counter() - start
    n_steps = steps or math.ceil(len(train_set) / cfg.batch_size)
    common.console.print(
        f"{path.name}: {cfg.backbone} {size}px batch {cfg.batch_size}, "
        f"timing {n_steps} batches after {warmup} warm-up ..."
    )
    row = {
        "config": path.name,
        "backbone": cfg.backbone,
        "input_size": size,
        "batch_size": cfg.batch_size,
        "bundled_train_images": len(train_set),
        "bundled_val_images": len(val_set),
        "decode_resize_seconds": load_seconds,
        **time_training(cfg, task, train_set, val_set, n_steps, warmup),
    }
    images = np.resize(val_set.images, (eval_images, size, size)) if eval_images else val_set.images
    row.update(time_eval(cfg, task, images, size, repeat=3))
    rate, val_rate = row["train_images_per_s"], row["torch_images_per_s"]
    for label, n_train, n_val in (
        ("bundled", len(train_set), len(val_set)),
        ("full", FULL_TRAIN_IMAGES, FULL_VAL_IMAGES),
    ):
        row[f"epoch_s_{label}_train_only"] = n_train / rate
        row[f"epoch_s_{label}_with_val"] = n_train / rate + n_val / val_rate
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        type=Path,
        default=[common.REPO / "configs" / "fast.yaml", common.REPO / "configs" / "full.yaml"],
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=20,
        help="timed batches for configs other than fast.yaml (fast: one bundled epoch)",
    )
    parser.add_argument("--fast-steps", type=int, default=None, help="override for fast.yaml")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first batches")
    parser.add_argument("--eval-images", type=int, default=256, help="images per eval pass")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="3 batches, 64 eval images")
    args = parser.parse_args()
    common.quiet_libraries()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.quick:
        args.steps, args.fast_steps, args.warmup, args.eval_images = 3, 3, 1, 64

    from radvigil.data.importers import from_csv

    version = from_csv(common.BUNDLED / "manifest.csv").version
    common.console.print(common.machine_line())
    rows = []
    for path in args.configs:
        steps = args.fast_steps if path.name == "fast.yaml" else args.steps
        rows.append(bench_config(path, version, steps, args.warmup, args.eval_images))

    common.table(
        "Training speed (radvigil train loop incl. augmentation, real bundled images)",
        [
            "config",
            "backbone",
            "px",
            "batch",
            "timed batches",
            "train img/s",
            "ms/batch (median)",
            "s/epoch 703",
            "s/epoch 4,699",
            "s/epoch 4,699 +val",
        ],
        [
            (
                r["config"],
                r["backbone"],
                r["input_size"],
                r["batch_size"],
                r["timed_batches"],
                r["train_images_per_s"],
                r["median_batch_ms"],
                r["epoch_s_bundled_train_only"],
                r["epoch_s_full_train_only"],
                r["epoch_s_full_with_val"],
            )
            for r in rows
        ],
    )
    common.table(
        "Evaluation speed (images/s, batch 64, preprocessing included)",
        ["config", "backbone", "px", "ORT fp32", "ORT int8", "PyTorch eager", "ORT/PyTorch"],
        [
            (
                r["config"],
                r["backbone"],
                r["input_size"],
                r["ort_fp32_images_per_s"],
                r["ort_int8_images_per_s"],
                r["torch_images_per_s"],
                r["ort_fp32_images_per_s"] / r["torch_images_per_s"],
            )
            for r in rows
        ],
    )
    common.console.print(
        "s/epoch 4,699 is extrapolated from the measured rate to the full shared Kermany train "
        "split; '+val' adds one validation pass (517 images) at the PyTorch eval rate."
    )
    common.write_json(args.out, "train_speed.json", {"quick": args.quick, "configs": rows})


if __name__ == "__main__":
    main()
