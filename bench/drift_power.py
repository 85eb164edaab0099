"""Drift monitors: false alarms with CIs, power, per-case guards, and label-free estimate error.

Model: a fast-config model trained on the bundled data (or the champion of ``--home``). Its
reference profile (bundled val, 262 real images; thresholds calibrated per window size where
the reference holds twice the window, i.e. 25/50/100; the cross-fitted OOD threshold) is loaded
from the model version as the service loads it; ``--reprofile`` (automatic when the stored
profile predates the guard statistics) rebuilds it from the champion's ONNX outputs on the val
images with the current code, exactly as training builds it.

Scenarios, each computed once as a *pool* of model outputs and image statistics and cached in
``--cache`` (see drift_data.py), then resampled into windows:

* ``none``: held-out Kermany train-split images of patients outside the bundled train/val, at the
  reference's 50/50 balance: the Kermany null. ``NIH AP (null)``: NIH ChestX-ray14 AP images
  of half of the AP patients against a profile built from the other half's images (patient
  codes kept: cross-fitting and calibration by patient), the second null.
* acquisition shifts of the ``none`` images (``radvigil.data.shifts``, seeded per image):
  brightness, contrast, noise, blur, JPEG, resolution; and the failures that hurt most:
  polarity inversion (255 - x), gamma 2.0 and 0.5, zoom x1.5 (a crop to the lungs), zoom x0.8
  (a shrunken, black-bordered field), rotation 15 degrees, collimation (black bands over 12% of
  each side);
* ``prevalence x2`` (label shift), the original Kermany test split (another acquisition batch),
  and NIH PA vs AP.

Per scenario and window size (25/50/100/200, capped at half the pool), windows are drawn without
replacement inside a window: ``--null-windows`` (default 200) on the nulls, ``--windows``
(default 40) on shifted pools. Each window runs through ``radvigil.monitoring.Monitor`` with the
shipped detectors and the profile's calibrated thresholds (MMD and the domain classifier without
permutations: the calibrated threshold decides, as in service). Printed: false alarms per
detector with Wilson 95% intervals, power per shift, per-case guard catch and false-flag rates,
the label-free estimates' error per shift and the ``estimate_check`` verdicts. Writes
``drift_power.json``.

    .venv/bin/python -m bench.drift_power [--home PATH] [--null-windows 200] [--windows 40]
        [--sizes 25 50 100 200] [--reprofile] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import time
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bench import common, drift_data, drift_report
from bench.drift_data import Pool

DETECTORS = drift_report.DRIFT_TESTS + drift_report.OTHER + ("estimate_check",)
PIXEL_SHIFTS = (
    ("brightness_up", "bright x1.2", "brightness", {"factor": 1.2}),
    ("brightness_down", "bright x0.8", "brightness", {"factor": 0.8}),
    ("contrast_up", "contrast x1.2", "contrast", {"factor": 1.2}),
    ("contrast_down", "contrast x0.8", "contrast", {"factor": 0.8}),
    ("noise", "noise s=8", "gaussian_noise", {}),
    ("blur", "blur s=1.5", "blur", {}),
    ("jpeg", "jpeg q=30", "jpeg", {}),
    ("resolution", "res x0.5", "resolution", {}),
    ("gamma_2", "gamma 2.0", "gamma", {"gamma": 2.0}),
    ("gamma_05", "gamma 0.5", "gamma", {"gamma": 0.5}),
    ("zoom_crop", "crop zoom x1.5", "zoom", {"zoom": 1.5}),
    ("zoom_out", "shrink x0.8", "zoom", {"zoom": 0.8}),
    ("rotation", "rotate 15deg", "rotation", {"degrees": 15.0}),
)
PREVALENCE_ODDS = 2.0
COLLIMATION = 0.12


def _invert(pixels: np.ndarray, i: int) -> np.ndarray:
    return (255 - pixels).astype(np.uint8)


def _collimate(pixels: np.ndarray, i: int) -> np.ndarray:
    out = pixels.copy()
    h, w = out.shape
    dh, dw = int(h * COLLIMATION), int(w * COLLIMATION)
    out[:dh], out[-dh:], out[:, :dw], out[:, -dw:] = 0, 0, 0, 0
    return out


def build_pools(args, engine, task) -> tuple[list[Pool], dict[str, np.ndarray], list[str]]:
    """Every scenario's pool (raw outputs and statistics) and the reference images' outputs."""
    from radvigil.data.populations import resample_prevalence
    from radvigil.data.shifts import apply_shift, get_shift
    from radvigil.loop.profiling import patient_groups
    from radvigil.monitoring import image_stats_frame

    notes = []
    held = drift_data.kermany_held_out(task, args.per_class, args.seed)
    if held is None:
        raise SystemExit("the shared Kermany data is needed (../shared/data)")
    images, balanced, what = held
    notes.append(what)
    base = drift_data.make_pool(engine, None, images, "all", "all", "none", "kermany")
    pools = [base.subset(balanced, "none", "Kermany held-out (null)", "none")]
    clean = images.take(balanced)

    def shifted(name: str, params: dict):
        shift = get_shift(name, **params)
        return lambda pixels, i: apply_shift(pixels, shift, seed=[args.seed, i])

    transforms = [(key, label, shifted(name, params)) for key, label, name, params in PIXEL_SHIFTS]
    transforms += [("inverted", "inverted polarity", _invert)]
    transforms += [("collimated", "collimated 12%", _collimate)]
    for key, label, fn in transforms:
        pools.append(
            drift_data.make_pool(engine, None, clean, key, label, "acquisition", "kermany", fn)
        )
    finding = task.class_index(task.findings[0])
    share = float(np.mean(images.labels == finding))
    factor = PREVALENCE_ODDS / (share / (1 - share))  # reference is 50/50: odds 1 -> 2
    frame = images.frame.assign(_row=np.arange(len(images.frame)))
    rows = resample_prevalence(frame, {task.findings[0]: factor}, args.seed, within=None)["_row"]
    pools.append(base.subset(rows.to_numpy(), "prevalence_x2", "prevalence x2 odds", "population"))
    test_images, test_what = drift_data.kermany_test(task, "shared")
    notes.append(f"{test_what}: a real acquisition-batch shift scenario")
    pools.append(
        drift_data.make_pool(
            engine, None, test_images, "kermany_test", "Kermany test folder", "population",
            "kermany",
        )
    )  # fmt: skip
    val = common.bundled_frame("val")
    val_pixels = common.read_pixels([common.BUNDLED / p for p in val["path"]])
    val_probs, val_raw = drift_data.infer(engine, val_pixels)
    extra = {
        "val.raw": val_raw,
        "val.probs": val_probs,
        "val.stats": image_stats_frame(val_pixels).to_numpy(np.float64),
        "val.labels": np.array([task.class_index(v) for v in val["label"]]),
    }
    if (groups := patient_groups(val)) is not None:
        extra["val.groups"] = groups
    views = None if args.no_nih else drift_data.nih_views(args.seed)
    if views is not None:
        ref_ap, held_ap, pa = views
        probs, raw = drift_data.infer(engine, ref_ap.pixels)
        extra |= {
            "nih.raw": raw,
            "nih.probs": probs,
            "nih.stats": image_stats_frame(ref_ap.pixels).to_numpy(np.float64),
        }
        if (groups := patient_groups(ref_ap.frame)) is not None:
            extra["nih.groups"] = groups
        pools.append(
            drift_data.make_pool(engine, None, held_ap, "nih_null", "NIH AP (null)", "none", "nih")
        )
        pools.append(
            drift_data.make_pool(engine, None, pa, "nih_pa", "NIH PA vs AP", "acquisition", "nih")
        )
    return pools, extra, notes


def profiles(loaded, engine, task, extra, config, args) -> tuple[dict, list[str]]:
    """The Kermany profile (stored or rebuilt) and the NIH one, calibrated as training does."""
    import pandas as pd

    from radvigil.loop.profiling import calibration_sizes
    from radvigil.monitoring import STAT_COLUMNS, Monitor, ReferenceProfile

    def patients(key: str, rows: int) -> tuple[np.ndarray | None, int]:
        groups = extra.get(key)
        return groups, rows if groups is None else len(np.unique(groups))

    notes = []
    stored = ReferenceProfile.from_path(loaded.profile_dir)
    stale = stored.reference.stats is None or "mediastinum_contrast" not in stored.reference.stats
    sizes = [*config.calibration.window_sizes, config.windows.size]
    out = {}
    if args.reprofile or stale:
        val = common.bundled_frame("val")
        groups, units = patients("val.groups", len(val))
        out["kermany"] = Monitor(
            ReferenceProfile.build(
                extra["val.raw"].astype(np.float32),
                extra["val.probs"],
                extra["val.labels"],
                pd.DataFrame(extra["val.stats"], columns=list(STAT_COLUMNS)),
                val[[c for c in ("site", "view_position") if c in val]].reset_index(drop=True),
                class_names=task.classes,
                n_components=min(config.profile.n_components, extra["val.raw"].shape[1]),
                groups=groups,
            ),
            config,
        ).calibrate(calibration_sizes(units, sizes))
        notes.append(
            "Kermany profile rebuilt from the champion's ONNX outputs on bundled val with the "
            "current code" + (" (the stored one predates the guard statistics)" if stale else "")
        )
    else:
        out["kermany"] = stored
    if "nih.raw" in extra:
        raw = extra["nih.raw"]
        groups, units = patients("nih.groups", len(raw))
        profile = ReferenceProfile.build(
            raw.astype(np.float32),
            extra["nih.probs"],
            None,
            pd.DataFrame(extra["nih.stats"], columns=list(STAT_COLUMNS)),
            None,
            class_names=task.classes,
            n_components=min(config.profile.n_components, raw.shape[1], len(raw) - 1),
            info={"reference": "nih1000 AP, half of the patients"},
            groups=groups,
        )
        out["nih"] = Monitor(profile, config).calibrate(calibration_sizes(units, sizes))
    for name, profile in out.items():
        sizes_done = sorted({c.window_size for c in profile.calibrations})
        notes.append(
            f"{name} profile: {len(profile.reference)} reference rows, calibrated window sizes "
            f"{sizes_done} (larger windows use the largest), OOD threshold "
            f"{profile.ood.threshold:.2f} (cross-fitted {profile.ood.quantile:.0%} quantile)"
        )
    return out, notes


def reduce_pools(pools: list[Pool], profiles: dict) -> None:
    """Embeddings reduced and OOD-scored under each pool's reference profile."""
    for pool in pools:
        profile = profiles[pool.reference]
        pool.reduced = profile.projection.reduce(pool.raw)
        pool.ood = profile.ood.score(pool.reduced)


def run_cell(pool: Pool, n: int, windows: int, monitor, args) -> dict:
    """``windows`` windows of ``n`` from ``pool`` through the monitor."""
    rng = np.random.default_rng([args.seed, zlib.crc32(pool.key.encode()), n])
    flags: dict[str, list[bool]] = {d: [] for d in DETECTORS}
    errors: dict[str, list[float]] = {"cbpe": [], "atc": [], "iw_accuracy": []}
    verdicts: list[str] = []
    anyflag = []
    start = time.perf_counter()
    for w in range(windows):
        idx = rng.choice(len(pool), n, replace=False)
        report = monitor.run(pool.window(idx), seed=w)
        fired = False
        for name in DETECTORS:
            result = report.result(name)
            if result is None or result.skipped:
                continue
            flags[name].append(result.drift)
            fired |= result.drift and name in drift_report.DRIFT_TESTS
            d = result.details
            if name == "cbpe" and "realised" in d:
                errors[name].append(d["estimated"]["accuracy"] - d["realised"]["accuracy"])
            elif name in errors and "realised_accuracy" in d:
                errors[name].append(d["estimated_accuracy"] - d["realised_accuracy"])
            if name == "estimate_check":
                verdicts.append(d["verdict"])
        anyflag.append(fired)
    return {
        "scenario": pool.key,
        "label": pool.label,
        "kind": pool.kind,
        "n": n,
        "windows": windows,
        "flagged": {d: int(np.sum(v)) for d, v in flags.items() if v},
        "counted": {d: len(v) for d, v in flags.items() if v},
        "any_drift_test": int(np.sum(anyflag)),
        "mean_abs_error": {k: float(np.mean(np.abs(v))) for k, v in errors.items() if v},
        "verdicts": {v: verdicts.count(v) for v in ("ok", "unverified", "degraded")},
        "seconds": time.perf_counter() - start,
    }


def run_pool(pool: Pool, sizes: list[int], windows: int, monitor, args) -> list[dict]:
    return [run_cell(pool, n, windows, monitor, args) for n in sizes]


def _worker_init(blas_threads: int) -> None:
    common.quiet_libraries()
    if blas_threads:
        threadpool_limits(blas_threads)


def run_all(pools: list[Pool], monitors: dict, args) -> list[dict]:
    """Every scenario's cells, in ``args.jobs`` processes (scenarios in their original order)."""
    work = []
    for pool in pools:
        sizes = sorted({min(n, len(pool) // 2) for n in args.sizes if min(n, len(pool) // 2) >= 10})
        windows = args.null_windows if pool.kind == "none" else args.windows
        work.append((pool, sizes, windows, monitors[pool.reference]))
    results: dict[str, list[dict]] = {}

    def done(pool: Pool, cells: list[dict]) -> None:
        results[pool.key] = cells
        common.console.print(
            f"  {pool.label}: {len(pool)} images, windows of {[c['n'] for c in cells]} "
            f"({sum(c['seconds'] for c in cells):.0f} s)"
        )

    if args.jobs <= 1:
        for pool, sizes, windows, monitor in work:
            done(pool, run_pool(pool, sizes, windows, monitor, args))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            args.jobs, mp_context=context, initializer=_worker_init, initargs=(args.blas_threads,)
        ) as executor:
            futures = {
                executor.submit(run_pool, pool, sizes, windows, monitor, args): pool
                for pool, sizes, windows, monitor in work
            }
            for future in concurrent.futures.as_completed(futures):
                done(futures[future], future.result())
    return [cell for pool in pools for cell in results[pool.key]]


def per_case(pools: list[Pool], profiles: dict, task, card) -> list[dict]:
    """Per scenario: guard, OOD and routing rates per case, and how many errors went unflagged."""
    from radvigil.monitoring import GUARD_NAMES, guard_table

    finding = task.findings[0]
    k = task.class_index(finding)
    threshold = float(card.thresholds[finding])
    rows = []
    for pool in pools:
        profile = profiles[pool.reference]
        guards = guard_table(pool.stats, profile.guard_bands)
        any_guard = guards.to_numpy().any(axis=1)
        ood = pool.ood > profile.ood.threshold
        routed = any_guard | ood
        row = {
            "scenario": pool.key,
            "label": pool.label,
            "kind": pool.kind,
            "images": len(pool),
            **{g: float(guards[g].mean()) for g in GUARD_NAMES},
            "any_guard": float(any_guard.mean()),
            "ood": float(ood.mean()),
            "routed": float(routed.mean()),
        }
        if pool.labels is not None and pool.reference == "kermany":
            wrong = pool.probs.argmax(axis=1) != pool.labels
            served_finding = (pool.probs[:, k] >= threshold) & (pool.labels != k)
            row |= {
                "errors": int(wrong.sum()),
                "errors_routed": int((wrong & routed).sum()),
                "false_findings_unflagged": int((served_finding & ~routed).sum()),
            }
        rows.append(row)
    return rows


def downstream(pools: list[Pool], profile, task, card) -> list[dict]:
    """Whole-pool accuracy, specificity, AUC and each label-free estimate's error."""
    from sklearn.metrics import roc_auc_score

    from radvigil.monitoring import WindowData, make_detector

    finding = task.findings[0]
    k = task.class_index(finding)
    out = []
    for pool in pools:
        if pool.labels is None or pool.reference != "kermany":
            continue
        positive = pool.labels == k
        flagged = pool.probs[:, k] >= float(card.thresholds[finding])
        window = WindowData(embeddings=pool.reduced, probs=pool.probs, labels=pool.labels)
        cbpe = make_detector("cbpe").run(profile, window).details
        atc = make_detector("atc").run(profile, window).details
        iw = make_detector("iw_accuracy").run(profile, window).details
        accuracy = float(np.mean(pool.probs.argmax(axis=1) == pool.labels))
        out.append(
            {
                "scenario": pool.key,
                "label": pool.label,
                "images": len(pool),
                "accuracy": accuracy,
                "sensitivity": float(flagged[positive].mean()),
                "specificity": float((~flagged[~positive]).mean()),
                "auc": float(roc_auc_score(positive, pool.probs[:, k])),
                "mean_confidence": float(pool.probs.max(axis=1).mean()),
                "cbpe_error": float(cbpe["estimated"]["accuracy"]) - accuracy,
                "atc_error": float(atc["estimated_accuracy"]) - accuracy,
                "iw_error": float(iw["estimated_accuracy"]) - accuracy,
                "iw_reliable": bool(iw["reliable"]),
                "iw_effective_share": float(iw["effective_share"]),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse/keep a trained home here")
    parser.add_argument("--null-windows", type=int, default=200, help="windows per null cell")
    parser.add_argument("--windows", type=int, default=40, help="windows per shifted cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--per-class", type=int, default=300, help="held-out normal cases")
    parser.add_argument("--no-nih", action="store_true", help="skip the NIH scenarios")
    parser.add_argument("--reprofile", action="store_true", help="rebuild the Kermany profile")
    parser.add_argument("--cache", type=Path, default=None, help="pool cache (.npz)")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the window loop")
    parser.add_argument("--blas-threads", type=int, default=1, help="0 = library default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="40/10 windows, sizes 25 50")
    args = parser.parse_args()
    common.quiet_libraries()
    if args.quick:
        args.null_windows, args.windows, args.sizes, args.per_class = 40, 10, [25, 50], 60
    common.console.print(common.machine_line())
    started = time.perf_counter()

    from radvigil.model.engine import OnnxEngine
    from radvigil.monitoring import Monitor, monitor_config_from_dict
    from radvigil.task import load_task

    detectors = {d: {} for d in DETECTORS}
    detectors["mmd"] = detectors["domain_classifier"] = {"n_permutations": 0}
    config = monitor_config_from_dict({"detectors": detectors, "alerts": []})
    with common.bench_home(args.home, quick=args.quick) as home:
        loaded = home.load()
        task = load_task(loaded.card.task.name)
        engine = OnnxEngine(loaded.onnx_path, threads=2)
        limit = threadpool_limits(args.blas_threads) if args.blas_threads else nullcontext()
        limit.__enter__()
        model_id = zlib.crc32(Path(loaded.onnx_path).read_bytes())
        cache = args.cache or args.out / f"drift_pools_v2_{model_id:08x}_{args.per_class}.npz"
        t0 = time.perf_counter()
        if cache.exists() and not args.quick:
            pools, extra = drift_data.load_pools(cache)
            notes = [f"pools read from the cache {cache.name}"]
        else:
            pools, extra, notes = build_pools(args, engine, task)
            if not args.quick:
                drift_data.save_pools(cache, pools, extra)
        pool_seconds = time.perf_counter() - t0
        refs, more = profiles(loaded, engine, task, extra, config, args)
        notes += more
        reduce_pools(pools, refs)
        common.console.print(f"pools ready in {pool_seconds:.0f} s; profiles built")
        monitors = {name: Monitor(profile, config) for name, profile in refs.items()}
        windows_started = time.perf_counter()
        cells = run_all(pools, monitors, args)
        windows_seconds = time.perf_counter() - windows_started
        cases = per_case(pools, refs, task, loaded.card)
        effects = downstream(pools, refs["kermany"], task, loaded.card)
        limit.__exit__(None, None, None)
    total = time.perf_counter() - started
    result = {
        "quick": args.quick,
        "machine": common.machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"backbone": loaded.card.backbone, "input_size": loaded.card.input.size},
        "notes": notes,
        "pools": [
            {"scenario": p.key, "label": p.label, "kind": p.kind, "images": len(p)} for p in pools
        ],
        "cells": cells,
        "per_case": cases,
        "downstream": effects,
        "seconds": {"pools": pool_seconds, "windows": windows_seconds, "total": total},
    }
    drift_report.print_all(result)
    common.write_json(args.out, "drift_power.json", result)
    common.console.print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()
