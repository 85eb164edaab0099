"""Tables of the drift benchmark (drift_power.py computes, this prints)."""

from __future__ import annotations

from bench import common

DRIFT_TESTS = ("image_stats", "mmd", "domain_classifier", "bbsd", "ood_rate")
OTHER = ("label_shift", "cbpe", "atc", "iw_accuracy")
SHORT = {
    "image_stats": "img_stats",
    "mmd": "mmd",
    "domain_classifier": "dom_clf",
    "bbsd": "bbsd",
    "ood_rate": "ood_rate",
    "label_shift": "label_sh",
    "cbpe": "cbpe",
    "atc": "atc",
    "iw_accuracy": "iw_acc",
}
TARGET_FALSE_ALARMS = 0.05


def wilson(k: int, n: int) -> tuple[float, float]:
    from radvigil.monitoring.stattests import wilson_interval

    return wilson_interval(k, n)


def _rate(cell: dict, name: str) -> str:
    n = cell["counted"].get(name)
    return "-" if not n else f"{cell['flagged'][name] / n:.2f}"


def _ci(cell: dict, name: str) -> str:
    n = cell["counted"].get(name)
    if not n:
        return "-"
    k = cell["flagged"][name]
    low, high = wilson(k, n)
    return f"{k / n:.3f} ({low:.3f}-{high:.3f})"


def print_all(result: dict) -> None:
    for note in result["notes"]:
        common.console.print(f"- {note}")
    cells = result["cells"]
    nulls = [c for c in cells if c["kind"] == "none"]
    names = DRIFT_TESTS + OTHER
    common.table(
        "False alarms on unshifted windows (share flagged, Wilson 95% CI); target <= 0.05",
        ["null", "n", "windows", *(SHORT[d] for d in names)],
        [(c["label"], c["n"], c["windows"], *(_ci(c, d) for d in names)) for c in nulls],
    )
    worst = max(
        (c["flagged"][d] / c["counted"][d], c["label"], c["n"], d)
        for c in nulls
        for d in names
        if c["counted"].get(d)
    )
    common.console.print(
        f"worst false-alarm rate: {worst[0]:.3f} ({worst[3]} on {worst[1]} at n = {worst[2]}); "
        f"'any of 5' (any input detector) is reported below, it is not a per-detector rate"
    )
    common.table(
        "Detection power (share of windows flagged; nulls = false-alarm rate)",
        ["scenario", "n", "windows", *(SHORT[d] for d in names), "any of 5"],
        [
            (
                c["label"],
                c["n"],
                c["windows"],
                *(_rate(c, d) for d in names),
                f"{c['any_drift_test'] / c['windows']:.2f}",
            )
            for c in cells
        ],
    )
    per_case = result["per_case"]
    common.table(
        "Per-case guards: share of cases flagged (on the nulls = false-flag rate); routed = any "
        "guard or OOD drifter",
        [
            "scenario",
            "images",
            "polarity",
            "field_of_view",
            "intensity_lut",
            "any guard",
            "OOD",
            "routed",
            "errors routed",
            "wrong finding unflagged",
        ],
        [
            (
                r["label"],
                r["images"],
                r["inverted_polarity"],
                r["field_of_view"],
                r["intensity_lut"],
                r["any_guard"],
                r["ood"],
                r["routed"],
                f"{r['errors_routed']}/{r['errors']}" if "errors" in r else "-",
                r.get("false_findings_unflagged", "-"),
            )
            for r in per_case
        ],
    )
    down = result["downstream"]
    base = next((d for d in down if d["scenario"] == "none"), None)
    at = {c["scenario"]: c for c in cells if c["n"] == 100}
    common.table(
        "Label-free estimates on each whole pool (estimate - true accuracy) and the "
        "estimate_check verdicts on windows of 100 (ok / unverified / degraded)",
        [
            "scenario",
            "accuracy",
            "d acc",
            "specificity",
            "AUC",
            "confidence",
            "cbpe err",
            "atc err",
            "iw err",
            "iw reliable",
            "verdicts n=100",
        ],
        [
            (
                d["label"],
                d["accuracy"],
                d["accuracy"] - base["accuracy"] if base else None,
                d["specificity"],
                d["auc"],
                d["mean_confidence"],
                d["cbpe_error"],
                d["atc_error"],
                d["iw_error"],
                f"{'yes' if d['iw_reliable'] else 'no'} ({d['iw_effective_share']:.2f})",
                _verdicts(at.get(d["scenario"])),
            )
            for d in down
        ],
    )
    harmful = [d for d in down if base and base["accuracy"] - d["accuracy"] > 0.05]
    missed = [
        d["label"]
        for d in harmful
        if at.get(d["scenario"]) and at[d["scenario"]]["verdicts"].get("ok", 0) > 0
    ]
    common.console.print(
        f"harmful shifts (accuracy down > 5 points): {[d['label'] for d in harmful]}; "
        f"called 'ok' on some windows of 100: {missed or 'none'}"
    )
    seconds = result["seconds"]
    common.console.print(
        f"pools {seconds['pools']:.0f} s, windows {seconds['windows']:.0f} s, "
        f"total {seconds['total']:.0f} s"
    )


def _verdicts(cell: dict | None) -> str:
    if not cell or not cell.get("verdicts"):
        return "-"
    v = cell["verdicts"]
    return f"{v.get('ok', 0)}/{v.get('unverified', 0)}/{v.get('degraded', 0)}"
