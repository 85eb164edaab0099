"""Tables, targets and the plot of the drift benchmark (drift_power.py computes, this shows)."""

from __future__ import annotations

import math
from pathlib import Path

import common

DRIFT_TESTS = ("image_stats", "mmd", "domain_classifier", "bbsd", "ood_rate")
OTHER = ("label_shift", "cbpe", "atc")
SHORT = {
    "image_stats": "img_stats",
    "mmd": "mmd",
    "domain_classifier": "dom_clf",
    "bbsd": "bbsd",
    "ood_rate": "ood_rate",
    "label_shift": "label_sh",
    "cbpe": "cbpe",
    "atc": "atc",
}
TARGET_POWER, TARGET_N = 0.9, 100
TARGET_FALSE_ALARMS = 0.05
TARGET_ESTIMATE_ERROR = 0.05
TARGET_OVERHEAD = 0.10
TARGET_MMD_SECONDS = 1.0


def print_all(result: dict) -> None:
    for note in result["notes"]:
        common.console.print(f"- {note}")
    common.table(
        f"Detection power (share of {result['settings']['windows']} windows flagged; "
        "on unshifted rows = false-alarm rate)",
        [
            "scenario",
            "n",
            *(SHORT[d] for d in DRIFT_TESTS + OTHER),
            "any of 5",
            "evidently",
        ],
        [
            (
                c["label"],
                c["n"],
                *(c["power"][d] for d in DRIFT_TESTS + OTHER),
                c["power_any_drift_test"],
                _evidently(c),
            )
            for c in result["cells"]
        ],
    )
    common.console.print(
        "'any of 5' = a window flagged by any of img_stats/mmd/dom_clf/bbsd/ood_rate; "
        "'-' = detector skipped (no task labels). evidently = share of its first k windows (k)."
    )
    nulls = [c for c in result["cells"] if c["kind"] == "none"]
    common.table(
        "False alarms on unshifted windows: as monitored (calibrated threshold) / "
        "detector's own test (p < 0.05)",
        ["scenario", "n", *(SHORT[d] for d in DRIFT_TESTS)],
        [
            (
                c["label"],
                c["n"],
                *(_pair(c["power"][d], c["power_own_test"][d]) for d in DRIFT_TESTS),
            )
            for c in nulls
        ],
    )
    common.console.print(
        "Calibrated thresholds exist for windows of 50 and 100 (Kermany profile, 262 rows) and "
        "50 (NIH profile, 181 rows); other sizes use the nearest."
    )
    down = result["downstream"]
    base = next((d for d in down if d["scenario"] == "none"), None)
    per_window = {
        c["scenario"]: c for c in result["cells"] if c["n"] == _largest_at_most(result, c, 100)
    }
    common.table(
        "Downstream effect on the whole pool, and label-free accuracy estimates "
        "(error = estimate - true)",
        [
            "scenario",
            "images",
            "prev",
            "acc",
            "d acc",
            "sens",
            "d sens",
            "spec",
            "AUC",
            "d AUC",
            "CBPE err",
            "ATC err",
            "CBPE |err| win",
            "ATC |err| win",
        ],
        [
            (
                d["label"],
                d["images"],
                d["prevalence"],
                d["accuracy"],
                d["accuracy"] - base["accuracy"] if base else None,
                d["sensitivity"],
                d["sensitivity"] - base["sensitivity"] if base else None,
                d["specificity"],
                d["auc"],
                d["auc"] - base["auc"] if base else None,
                d["cbpe_error"],
                d["atc_error"],
                per_window.get(d["scenario"], {}).get("cbpe_mean_abs_error"),
                per_window.get(d["scenario"], {}).get("atc_mean_abs_error"),
            )
            for d in down
        ],
    )
    common.console.print(
        "sens/spec at the model's operating threshold; acc = argmax accuracy (what CBPE/ATC "
        "estimate); |err| win = mean absolute error per window at n=100."
    )
    c = result["costs"]
    common.table(
        f"Monitoring cost per image (bundled 224 px JPEGs, {c['images']} images, best of 3)",
        ["measure", "value"],
        [
            ("image statistics (ms)", c["image_stats_ms"]),
            ("OOD score + PCA reduction (ms)", c["ood_and_reduction_ms"]),
            ("= monitoring per image (ms)", c["monitoring_ms"]),
            ("service assess(): stats + QC + OOD + drifter PNG (ms)", c["assess_ms"]),
            ("ONNX inference, 1 image per call, with preprocessing (ms)", c["inference_single_ms"]),
            ("ONNX inference per image at batch 16 (ms)", c["inference_batch16_ms"]),
            ("MMD 500 vs 500, 200 permutations (s, median of 5)", c["mmd_500v500_200perm_s"]),
            ("MMD 500 vs 500, 500 permutations (s, median of 5)", c["mmd_500v500_500perm_s"]),
            ("  same, 200 permutations, 1 BLAS thread (s)", c["mmd_500v500_200perm_1blas_s"]),
            ("  same, 500 permutations, 1 BLAS thread (s)", c["mmd_500v500_500perm_1blas_s"]),
        ],
    )


def _pair(a: float | None, b: float | None) -> str:
    return f"{common.fmt(a)} / {common.fmt(b)}"


def _evidently(cell: dict) -> str:
    if cell["evidently"] is None:
        return "-"
    return f"{cell['evidently']:.2f} ({cell['evidently_windows']})"


def _largest_at_most(result: dict, cell: dict, limit: int) -> int | None:
    sizes = [c["n"] for c in result["cells"] if c["scenario"] == cell["scenario"]]
    small = [n for n in sizes if n <= limit]
    return max(small) if small else None


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def targets(result: dict) -> list[dict]:
    """Print the targets table (PASS/MISS as facts, nothing asserted) and return its rows."""
    cells, rows = result["cells"], []

    def add(measure: str, value: str, target: str, ok: bool | None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        rows.append({"measure": measure, "value": value, "target": target, "verdict": verdict})

    for scenario in dict.fromkeys(c["scenario"] for c in cells if c["kind"] == "acquisition"):
        mine = [c for c in cells if c["scenario"] == scenario and c["n"] <= TARGET_N]
        label = next(c["label"] for c in cells if c["scenario"] == scenario)
        best = max(
            (
                (c["power"][d], d, c["n"])
                for c in mine
                for d in DRIFT_TESTS
                if c["power"][d] is not None
            ),
            default=None,
        )
        if best is None:
            add(f"power: {label}", "no window <= 100", f">= {TARGET_POWER}", False)
            continue
        reach = [
            c["n"] for c in mine if any((c["power"][d] or 0) >= TARGET_POWER for d in DRIFT_TESTS)
        ]
        first = f", reached at n={min(reach)}" if reach else ""
        add(
            f"power: {label}",
            f"{best[0]:.2f} ({best[1]} @n={best[2]}{first})",
            f">= {TARGET_POWER} at n <= {TARGET_N}",
            best[0] >= TARGET_POWER,
        )
    nulls = [c for c in cells if c["kind"] == "none"]
    for name in (*DRIFT_TESTS, *OTHER, "evidently"):
        worst = None
        for c in nulls:
            rate = c["evidently"] if name == "evidently" else c["power"][name]
            if rate is None:
                continue
            windows = c["evidently_windows"] if name == "evidently" else c["windows"]
            if worst is None or rate > worst[0]:
                worst = (rate, c, windows)
        if worst is None:
            continue
        rate, c, windows = worst
        low, high = wilson(round(rate * windows), windows)
        add(
            f"false alarms: {name} (worst cell)",
            f"{rate:.2f} [{low:.2f}-{high:.2f}] ({c['label']}, n={c['n']})",
            f"<= {TARGET_FALSE_ALARMS}",
            rate <= TARGET_FALSE_ALARMS,
        )
    for method in ("cbpe", "atc"):
        errors = [(abs(d[f"{method}_error"]), d) for d in result["downstream"]]
        if errors:
            err, d = max(errors, key=lambda e: e[0])
            add(
                f"estimate error: {method.upper()} (worst whole pool)",
                f"{err:.3f} ({d['label']})",
                f"<= {TARGET_ESTIMATE_ERROR}",
                err <= TARGET_ESTIMATE_ERROR,
            )
    c = result["costs"]
    for key, what in (
        ("inference_single_ms", "1 image/call"),
        ("inference_batch16_ms", "batch 16"),
    ):
        share = c["monitoring_ms"] / c[key]
        add(
            f"monitoring overhead vs inference ({what})",
            f"{share:.0%} ({c['monitoring_ms']:.2f} / {c[key]:.2f} ms)",
            f"<= {TARGET_OVERHEAD:.0%}",
            share <= TARGET_OVERHEAD,
        )
    for perms in (200, 500):
        seconds = c[f"mmd_500v500_{perms}perm_s"]
        add(
            f"MMD 500 vs 500, {perms} permutations",
            f"{seconds:.3f} s",
            f"<= {TARGET_MMD_SECONDS} s",
            seconds <= TARGET_MMD_SECONDS,
        )
    common.table(
        "Targets (printed facts, not asserted)",
        ["measure", "value", "target", ""],
        [(r["measure"], r["value"], r["target"], r["verdict"]) for r in rows],
    )
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(c["scenario"] for c in result["cells"]))
    cols = 4
    rows = math.ceil(len(scenarios) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        mine = [c for c in result["cells"] if c["scenario"] == scenario]
        sizes = [c["n"] for c in mine]
        for name in DRIFT_TESTS + OTHER:
            values = [c["power"][name] for c in mine]
            if all(v is None for v in values):
                continue
            style = "-" if name in DRIFT_TESTS else ":"
            ax.plot(sizes, [math.nan if v is None else v for v in values], style, marker="o",
                    ms=3, label=SHORT[name])  # fmt: skip
        ev = [math.nan if c["evidently"] is None else c["evidently"] for c in mine]
        ax.plot(sizes, ev, "k--", marker="s", ms=3, label="evidently")
        ax.axhline(TARGET_POWER, color="grey", lw=0.6)
        ax.axhline(TARGET_FALSE_ALARMS, color="red", lw=0.6)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        kind = mine[0]["kind"]
        ax.set_title(
            f"{mine[0]['label']}" + (" (false alarms)" if kind == "none" else ""), fontsize=9
        )
        ax.set_xlabel("window size", fontsize=8)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", ncol=2, fontsize=8)
    fig.suptitle("radvigil drift detection: share of windows flagged (grey 0.9, red 0.05)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    common.console.print(f"wrote {path}")
