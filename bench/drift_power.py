"""Drift detection power, false alarms, label-free estimate error and monitoring cost.

Model: a fast-config model trained on the bundled data (or the champion of ``--home``). Its
reference profile (bundled val, 262 real images, thresholds calibrated at training for windows
of 50 and 100) is loaded from the model version, exactly as the service loads it.

Scenarios (each computed once as a *pool*: ONNX probabilities and embeddings, PCA-reduced
embeddings and OOD scores under the profile, image statistics of the pixels; see drift_data.py):

* ``none``: the real Kermany test images at the reference's 50/50 class balance (from the shared
  data: 234 + 234 of the original test split; ``--pool bundled``: the 251 bundled test images);
* acquisition shifts from ``radvigil.data.shifts`` applied to those images (original 224 px,
  before the model's resize, seeded per image): brightness x1.2 / x0.8, contrast x1.2 / x0.8,
  Gaussian noise (sigma 8), blur (sigma 1.5 px), JPEG quality 30, resolution x0.5;
* ``prevalence x2``: ``radvigil.data.populations.resample_prevalence`` of the whole test split
  to twice the reference's pneumonia odds (50% -> 67%), no pixel change (pure label shift);
* ``NIH PA vs AP``: a view/population shift on other data. The NIH ChestX-ray14 subset (64 px
  adults, normal/abnormal labels, not this task's classes) has per-image AP/PA. A second profile
  is built from half the AP images under the same model and calibrated like training does; the
  other AP half is its unshifted pool, the PA images its shifted pool. Its labels are not the
  task's, so label-based estimators and downstream metrics do not apply there.

For every scenario and window size (25/50/100/200, capped at half the pool so that windows
differ), ``--windows`` windows (default 100) are drawn *without* replacement inside a window from
the pool (the pool is reused across windows; ``--with-replacement`` draws with replacement and
caps at the pool size), and the monitor (``radvigil.monitoring.Monitor``, shipped detector
defaults and the profile's calibrated thresholds) runs on each. Power = share of windows
flagged; on ``none`` windows that share is the false-alarm rate. Evidently's default embedding
drift verdict (``evidently_embedding_drift`` on raw embeddings) runs on the first
``--evidently-windows`` windows of every cell (default 10: one call costs 0.15-0.4 s here, more
than all radvigil detectors together on a window).

Also measured: the downstream change of accuracy, sensitivity/specificity at the model's
operating threshold and AUC on each whole shifted pool; CBPE and ATC estimated accuracy minus the
true accuracy (whole pool, and mean |error| per window); per-image monitoring cost (image stats,
OOD score + PCA reduction, the service's whole ``assess``) vs per-image ONNX inference; one
500-vs-500 MMD permutation test. Writes ``drift_power.json`` and ``drift_power.png``.

    .venv/bin/python bench/drift_power.py [--home PATH] [--windows 100] [--sizes 25 50 100 200]
        [--evidently-windows 10] [--pool shared|bundled] [--with-replacement] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import time
import zlib
from contextlib import nullcontext
from pathlib import Path

import common
import drift_data
import drift_report
import numpy as np
from drift_data import Pool
from threadpoolctl import threadpool_limits

DETECTORS = (
    "image_stats",
    "mmd",
    "domain_classifier",
    "bbsd",
    "ood_rate",
    "label_shift",
    "cbpe",
    "atc",
)
PIXEL_SHIFTS = (
    ("brightness_up", "bright x1.2", "brightness", {"factor": 1.2}),
    ("brightness_down", "bright x0.8", "brightness", {"factor": 0.8}),
    ("contrast_up", "contrast x1.2", "contrast", {"factor": 1.2}),
    ("contrast_down", "contrast x0.8", "contrast", {"factor": 0.8}),
    ("noise", "noise s=8", "gaussian_noise", {}),
    ("blur", "blur s=1.5", "blur", {}),
    ("jpeg", "jpeg q=30", "jpeg", {}),
    ("resolution", "res x0.5", "resolution", {}),
)
PREVALENCE_ODDS = 2.0
OWN_ALPHA = 0.05  # every detector's documented default level


def build_pools(args, loaded, engine, profile, task, config) -> tuple[list[Pool], dict, list[str]]:
    """Every scenario's pool, the monitors' references, and notes on what was used."""
    from radvigil.data.populations import resample_prevalence
    from radvigil.data.shifts import apply_shift, get_shift
    from radvigil.monitoring import Monitor

    notes = []
    held = (
        None
        if args.pool == "bundled"
        else drift_data.kermany_held_out(task, args.per_class, args.seed)
    )
    test_images = None
    if held is None:
        images, what = drift_data.kermany_test(task, "bundled")
        balanced = np.arange(len(images.pixels))
        notes.append(
            f"{what} used as the unshifted pool (no shared data or --pool bundled): it is the "
            "original test split, which differs from the reference, so its false-alarm rates "
            "are not a null measurement"
        )
    else:
        images, balanced, what = held
        notes.append(what)
        test_images, test_what = drift_data.kermany_test(task, "shared")
        notes.append(f"{test_what}: a real population/acquisition shift scenario")
    base = drift_data.make_pool(engine, profile, images, "all", "all", "none", "kermany")
    pools = [base.subset(balanced, "none", "unshifted", "none")]
    notes.append(_exceedance(pools[0], profile))
    clean = images.take(balanced)
    for key, label, name, params in PIXEL_SHIFTS:
        shift = get_shift(name, **params)

        def transform(pixels, i, shift=shift):
            return apply_shift(pixels, shift, seed=[args.seed, i])

        pools.append(
            drift_data.make_pool(
                engine, profile, clean, key, label, "acquisition", "kermany", transform, str(shift)
            )
        )
    finding = task.class_index(task.findings[0])
    ref_share = float(np.mean(profile.reference.labels == finding))
    share = float(np.mean(images.labels == finding))
    target_odds = PREVALENCE_ODDS * ref_share / (1 - ref_share)
    factor = target_odds / (share / (1 - share))
    frame = images.frame.assign(_row=np.arange(len(images.frame)))
    rows = resample_prevalence(frame, {task.findings[0]: factor}, args.seed, within=None)["_row"]
    new_share = float(np.mean(images.labels[rows.to_numpy()] == finding))
    pools.append(
        base.subset(
            rows.to_numpy(),
            "prevalence_x2",
            f"prev x2 odds {new_share:.0%}",
            "population",
            f"resample_prevalence factor {factor:.3f} on the unshifted images",
        )
    )
    if test_images is not None:
        pools.append(
            drift_data.make_pool(
                engine, profile, test_images, "kermany_test", "Kermany test", "population",
                "kermany", note="original test split, balanced",
            )
        )  # fmt: skip
    monitors = {"kermany": Monitor(profile, config)}
    # Evidently compares raw embeddings: those of the reference images (bundled val) under ONNX.
    val = common.read_pixels([common.BUNDLED / p for p in common.bundled_frame("val")["path"]])
    raw_refs = {"kermany": drift_data.infer(engine, val)[1]}
    views = None if args.no_nih else drift_data.nih_views(args.seed)
    if views is None:
        notes.append("NIH view scenario skipped (no shared data or --no-nih)")
    else:
        ref_ap, held_ap, pa = views
        nih_profile, nih_raw = drift_data.nih_profile(engine, ref_ap, task.classes, config)
        monitors["nih"] = Monitor(nih_profile, config)
        raw_refs["nih"] = nih_raw
        notes.append(
            f"NIH: AP reference {len(ref_ap.pixels)}, AP held-out {len(held_ap.pixels)}, "
            f"PA {len(pa.pixels)} (64 px adults; a separate profile under the same model)"
        )
        pools.append(
            drift_data.make_pool(
                engine, nih_profile, held_ap, "nih_null", "NIH AP (null)", "none", "nih"
            )
        )
        notes.append(_exceedance(pools[-1], nih_profile))
        pools.append(
            drift_data.make_pool(
                engine, nih_profile, pa, "nih_pa", "NIH PA vs AP", "acquisition", "nih"
            )
        )
    return pools, {"monitors": monitors, "raw": raw_refs}, notes


def _exceedance(pool: Pool, profile) -> str:
    """How often unseen in-distribution cases pass the OOD threshold fitted on the reference."""
    rate = float(np.mean(pool.ood > profile.ood.threshold))
    return (
        f"{pool.label}: {rate:.1%} of its cases pass the OOD threshold (the reference's "
        f"{profile.ood.quantile:.0%} quantile; nominal {1 - profile.ood.quantile:.0%})"
    )


def run_cell(pool: Pool, n: int, monitor, raw_ref: np.ndarray, args) -> dict:
    """``args.windows`` windows of ``n`` from ``pool`` through the monitor (and Evidently).

    Each detector's decision is recorded twice: as the monitor makes it (the profile's
    calibrated threshold for the nearest window size) and by the detector's own test
    (``p_value < 0.05``: exact permutation tests for mmd/domain_classifier, KS/binomial
    otherwise), to show what calibration adds or costs.
    """
    from radvigil.monitoring.evidently_report import evidently_embedding_drift

    rng = np.random.default_rng([args.seed, zlib.crc32(pool.key.encode()), n])
    flags: dict[str, list[bool]] = {d: [] for d in DETECTORS}
    own: dict[str, list[bool]] = {d: [] for d in DETECTORS}
    anyflag, evidently, cbpe_err, atc_err = [], [], [], []
    start, evidently_seconds = time.perf_counter(), 0.0
    for w in range(args.windows):
        idx = rng.choice(len(pool), n, replace=args.with_replacement)
        report = monitor.run(pool.window(idx), seed=w)
        fired = False
        for name in DETECTORS:
            result = report.result(name)
            if result is None or result.skipped:
                continue
            flags[name].append(result.drift)
            if result.p_value is not None:
                own[name].append(result.p_value < OWN_ALPHA)
            fired |= result.drift and name in drift_report.DRIFT_TESTS
            details = result.details
            if name == "cbpe" and "realised" in details:
                cbpe_err.append(details["estimated"]["accuracy"] - details["realised"]["accuracy"])
            if name == "atc" and "realised_accuracy" in details:
                atc_err.append(details["estimated_accuracy"] - details["realised_accuracy"])
        anyflag.append(fired)
        if w < args.evidently_windows:
            t0 = time.perf_counter()
            evidently.append(evidently_embedding_drift(raw_ref, pool.raw[idx]).drift)
            evidently_seconds += time.perf_counter() - t0
    return {
        "scenario": pool.key,
        "label": pool.label,
        "kind": pool.kind,
        "n": n,
        "windows": args.windows,
        "power": {d: (float(np.mean(v)) if v else None) for d, v in flags.items()},
        "power_own_test": {d: (float(np.mean(v)) if v else None) for d, v in own.items()},
        "power_any_drift_test": float(np.mean(anyflag)),
        "evidently": float(np.mean(evidently)) if evidently else None,
        "evidently_windows": len(evidently),
        "cbpe_mean_abs_error": float(np.mean(np.abs(cbpe_err))) if cbpe_err else None,
        "atc_mean_abs_error": float(np.mean(np.abs(atc_err))) if atc_err else None,
        "seconds": time.perf_counter() - start,
        "evidently_seconds": evidently_seconds,
    }


def run_pool(pool: Pool, sizes: list[int], monitor, raw_ref: np.ndarray, args) -> list[dict]:
    """All window sizes of one scenario (one unit of work for the process pool)."""
    return [run_cell(pool, n, monitor, raw_ref, args) for n in sizes]


def _worker_init(blas_threads: int) -> None:
    common.quiet_libraries()
    if blas_threads:
        threadpool_limits(blas_threads)


def run_all(pools: list[Pool], refs: dict, args) -> list[dict]:
    """Every scenario's cells, in ``args.jobs`` processes (scenarios in their original order)."""
    work = []
    for pool in pools:
        sizes = window_sizes(pool, args.sizes, args.with_replacement)
        work.append((pool, sizes, refs["monitors"][pool.reference], refs["raw"][pool.reference]))
    results: dict[str, list[dict]] = {}

    def done(pool: Pool, cells: list[dict]) -> None:
        results[pool.key] = cells
        common.console.print(
            f"  {pool.label}: {len(pool)} images, windows of {[c['n'] for c in cells]} "
            f"({sum(c['seconds'] for c in cells):.0f} s, of which Evidently "
            f"{sum(c['evidently_seconds'] for c in cells):.0f} s)"
        )

    if args.jobs <= 1:
        for pool, sizes, monitor, raw in work:
            done(pool, run_pool(pool, sizes, monitor, raw, args))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            args.jobs, mp_context=context, initializer=_worker_init, initargs=(args.blas_threads,)
        ) as executor:
            futures = {
                executor.submit(run_pool, pool, sizes, monitor, raw, args): pool
                for pool, sizes, monitor, raw in work
            }
            for future in concurrent.futures.as_completed(futures):
                done(futures[future], future.result())
    return [cell for pool in pools for cell in results[pool.key]]


def window_sizes(pool: Pool, sizes: list[int], with_replacement: bool) -> list[int]:
    cap = len(pool) if with_replacement else len(pool) // 2
    return sorted({min(n, cap) for n in sizes if min(n, cap) >= 10})


def downstream(pool: Pool, profile, task, card) -> dict | None:
    """Accuracy, sensitivity/specificity at the operating threshold, AUC, CBPE/ATC estimates."""
    from sklearn.metrics import roc_auc_score

    from radvigil.monitoring import WindowData, make_detector

    if pool.labels is None:
        return None
    finding = task.findings[0]
    k = task.class_index(finding)
    positive = pool.labels == k
    flagged = pool.probs[:, k] >= float(card["thresholds"][finding])
    window = WindowData(probs=pool.probs, labels=pool.labels)
    cbpe = make_detector("cbpe").run(profile, window).details
    atc = make_detector("atc").run(profile, window).details
    accuracy = float(np.mean(pool.probs.argmax(axis=1) == pool.labels))
    return {
        "scenario": pool.key,
        "label": pool.label,
        "images": len(pool),
        "prevalence": float(positive.mean()),
        "accuracy": accuracy,
        "sensitivity": float(flagged[positive].mean()),
        "specificity": float((~flagged[~positive]).mean()),
        "auc": float(roc_auc_score(positive, pool.probs[:, k])),
        "cbpe_accuracy": float(cbpe["estimated"]["accuracy"]),
        "atc_accuracy": float(atc["estimated_accuracy"]),
        "cbpe_error": float(cbpe["estimated"]["accuracy"]) - accuracy,
        "atc_error": float(atc["estimated_accuracy"]) - accuracy,
    }


def costs(loaded, engine, profile, pools: list[Pool], n_images: int) -> dict:
    """Per-image monitoring vs inference (ms), and the 500-vs-500 MMD permutation test (s)."""
    from radvigil.data.io import read_image
    from radvigil.monitoring import image_stats, ood_score
    from radvigil.monitoring.kernels import mmd_test
    from radvigil.service.assessment import assess
    from radvigil.service.lifecycle import ServedModel

    frame = common.bundled_frame("test").head(n_images)
    images = [read_image(common.BUNDLED / p) for p in frame["path"]]
    pixels = [im.pixels for im in images]
    _, embeddings = drift_data.infer(engine, pixels)
    served = ServedModel(loaded, "champion", engine, profile=profile)
    n = len(images)

    def per_image(fn) -> float:
        seconds, _ = common.timed(fn, repeat=3)
        return seconds / n * 1000

    def batched(size: int) -> None:
        for s in range(0, n - size + 1, size):
            engine.predict(pixels[s : s + size])

    def reduce_and_score() -> None:
        for e in embeddings:
            ood_score(profile, e[None, :])
            profile.projection.reduce(e[None, :])

    engine.predict(pixels[:16])  # warm-up
    out = {
        "images": n,
        "image_stats_ms": per_image(lambda: [image_stats(p) for p in pixels]),
        "ood_and_reduction_ms": per_image(reduce_and_score),
        "assess_ms": per_image(
            lambda: [assess(served, im, e) for im, e in zip(images, embeddings, strict=True)]
        ),
        "inference_single_ms": per_image(lambda: [engine.predict([p]) for p in pixels]),
        "inference_batch16_ms": common.timed(lambda: batched(16), repeat=3)[0]
        / ((n // 16) * 16)
        * 1000,
    }
    out["monitoring_ms"] = out["image_stats_ms"] + out["ood_and_reduction_ms"]
    pool = {p.key: p for p in pools}
    x = np.concatenate([profile.reference.embeddings, pool["none"].reduced])[:500]
    shifted = pool["blur"].reduced
    rng = np.random.default_rng(0)
    y = shifted[rng.choice(len(shifted), 500, replace=len(shifted) < 500)]
    for threads in (None, 1):
        suffix = "" if threads is None else "_1blas"
        with threadpool_limits(threads) if threads else nullcontext():
            for permutations in (200, 500):
                runs = []
                for _ in range(5):
                    start = time.perf_counter()
                    mmd_test(x, y, permutations, 0.05, rng)
                    runs.append(time.perf_counter() - start)
                out[f"mmd_500v500_{permutations}perm{suffix}_s"] = float(np.median(runs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse/keep a trained home here")
    parser.add_argument("--windows", type=int, default=100, help="windows per scenario and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument(
        "--evidently-windows", type=int, default=10, help="Evidently runs on this many per cell"
    )
    parser.add_argument(
        "--pool",
        choices=["shared", "bundled"],
        default="shared",
        help="shared: held-out Kermany train-split patients; bundled: the bundled test split",
    )
    parser.add_argument("--per-class", type=int, default=300, help="held-out normal cases")
    parser.add_argument("--with-replacement", action="store_true")
    parser.add_argument("--no-nih", action="store_true", help="skip the NIH view scenario")
    parser.add_argument("--cost-images", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the window loop")
    parser.add_argument(
        "--blas-threads", type=int, default=1, help="BLAS threads for the window loop; 0 = default"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="10 windows, sizes 25 50, 3 Evidently")
    args = parser.parse_args()
    common.quiet_libraries()
    if args.quick:
        args.windows, args.sizes, args.evidently_windows, args.cost_images = 10, [25, 50], 3, 48
        args.windows, args.evidently_windows, args.per_class = 5, 2, 40
    common.console.print(common.machine_line())
    started = time.perf_counter()

    from radvigil.model.engine import OnnxEngine
    from radvigil.monitoring import ReferenceProfile, monitor_config_from_dict
    from radvigil.task import load_task

    config = monitor_config_from_dict({"detectors": {d: {} for d in DETECTORS}, "alerts": []})
    with common.bench_home(args.home, quick=args.quick) as home:
        loaded = home.load()
        task = load_task(loaded.card["task"]["name"])
        profile = ReferenceProfile.from_path(loaded.profile_dir)
        engine = OnnxEngine(loaded.onnx_path, threads=2)
        t0 = time.perf_counter()
        # Small-matrix numpy/scipy work runs 5-8x faster with one BLAS thread on a loaded
        # 2-core machine (OpenBLAS threads spin); the cost section below measures both.
        limit = threadpool_limits(args.blas_threads) if args.blas_threads else nullcontext()
        limit.__enter__()
        pools, refs, notes = build_pools(args, loaded, engine, profile, task, config)
        pool_seconds = time.perf_counter() - t0
        common.console.print(f"pools computed in {pool_seconds:.0f} s")
        windows_started = time.perf_counter()
        cells = run_all(pools, refs, args)
        windows_seconds = time.perf_counter() - windows_started
        effects = [
            d
            for p in pools
            if p.reference == "kermany"
            if (d := downstream(p, profile, task, loaded.card))
        ]
        limit.__exit__(None, None, None)
        cost = costs(loaded, engine, profile, pools, args.cost_images)
    total = time.perf_counter() - started
    result = {
        "quick": args.quick,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"backbone": loaded.card["backbone"], "input_size": loaded.card["input"]["size"]},
        "notes": notes,
        "pools": [
            {"scenario": p.key, "label": p.label, "kind": p.kind, "images": len(p), "note": p.note}
            for p in pools
        ],
        "cells": cells,
        "downstream": effects,
        "costs": cost,
        "seconds": {"pools": pool_seconds, "windows": windows_seconds, "total": total},
    }
    drift_report.print_all(result)
    result["targets"] = drift_report.targets(result)
    common.write_json(args.out, "drift_power.json", result)
    drift_report.plot(result, args.out / "drift_power.png")
    common.console.print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
