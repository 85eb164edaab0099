"""Robustness of model versions to image processing: clean vs each perturbation of the suite.

For every model version (``--model``, repeatable) and every perturbation of the robustness
gate's suite (``configs/gates.yaml`` if it has one, else the default suite) at its mild and
strong strength, the site's studies are perturbed (seeded per image) and scored at the
version's own operating threshold. The table shows sensitivity, specificity and AUC with 95 %
bootstrap intervals, and the share of studies the per-case checks flag (guards, OOD, QC), so a
reader sees both what processing costs the model and whether the service would have warned.

    python -m bench.robustness --fast                 # trains the fast model in a temp home
    python -m bench.robustness --fast --config configs/demo.yaml --home /tmp/demo-home
    RADVIGIL_HOME=.radvigil python -m bench.robustness --model chest-pneumonia/1 \\
        --model chest-pneumonia@champion    # the demo champions, after make demo

Studies: Kermany's test-folder batch from the bundled stream (``--studies`` of them, default
200), the acquisition batch the demo's site sends. Writes ``bench/results/robustness.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bench import common
from bench.common import (
    DEFAULT_OUT,
    FAST_CONFIG,
    MODEL_NAME,
    REPO,
    console,
    quiet_libraries,
    read_pixels,
    site_version,
    table,
    write_json,
)

SEED = 0


def _suite(criteria_path: Path) -> tuple[list[Any], dict[str, float], int]:
    from radvigil.evaluation import criteria_from_dict, load_criteria
    from radvigil.evaluation.criteria import Robustness

    gates = load_criteria(criteria_path).gates if criteria_path.is_file() else []
    gate = next((g for g in gates if isinstance(g, Robustness)), None)
    if gate is None:
        gate = criteria_from_dict({"gates": [{"kind": "robustness"}]}).gates[0]
    return gate.suite, gate.max_drop, gate.seed


def _flags(loaded: Any, pixels: list[np.ndarray], embeddings: np.ndarray) -> np.ndarray:
    """Per study: would the service have flagged it (guard, OOD above threshold)?"""
    from radvigil.monitoring import check_guards, image_stats, is_drifter
    from radvigil.monitoring.profile import ReferenceProfile

    if loaded.profile_dir is None:
        return np.zeros(len(pixels), dtype=bool)
    profile = ReferenceProfile.from_path(loaded.profile_dir)
    scores = profile.ood.score(profile.projection.reduce(embeddings))
    flagged = []
    for x, score in zip(pixels, scores, strict=True):
        guards = check_guards(image_stats(x), profile.guard_bands)
        flagged.append(is_drifter(float(score), [], profile, guards=guards)[0])
    return np.asarray(flagged)


def _judge(
    loaded: Any, labels: list[str], pixels: list[np.ndarray], thresholds: dict[str, float]
) -> dict[str, Any]:
    from radvigil.evaluation.bootstrap import estimate
    from radvigil.evaluation.decision import encode_labels, finding_indices, threshold_vector
    from radvigil.evaluation.statistics import finding_statistic
    from radvigil.loop.evaluation import task_of
    from radvigil.model.engine import OnnxEngine

    task = task_of(loaded)
    engine = OnnxEngine(loaded.onnx_path)
    probs, embeddings = [], []
    for i in range(0, len(pixels), 64):
        p, e = engine.predict(pixels[i : i + 64])
        probs.append(p)
        embeddings.append(e)
    p, e = np.concatenate(probs), np.concatenate(embeddings)
    y = encode_labels(labels, task.classes)
    cuts = threshold_vector(thresholds, task.findings)
    stats = estimate(
        finding_statistic(y, p, finding_indices(task.classes, task.findings), cuts),
        y.size,
        n_resamples=500,
        seed=SEED,
        level=0.95,
    )
    out = {
        m: [float(stats[m].value[0]), float(stats[m].low[0]), float(stats[m].high[0])]
        for m in ("sensitivity", "specificity", "auc")
    }
    return {**out, "flag_rate": float(_flags(loaded, pixels, e).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--fast", action="store_true", help="train --config's model in a home (temp unless --home)"
    )
    parser.add_argument("--config", type=Path, default=FAST_CONFIG, help="with --fast: its config")
    parser.add_argument("--home", type=Path, default=None, help="with --fast: reuse/keep this home")
    parser.add_argument("--model", action="append", help="REF (repeatable); default champion")
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--criteria", type=Path, default=REPO / "configs" / "gates.yaml")
    parser.add_argument("--quick", action="store_true", help="with --fast: a one-epoch model")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--site",
        default=None,
        help="judge at this site's own thresholds where a version has them (site calibration)",
    )
    args = parser.parse_args()
    quiet_libraries()
    from radvigil.data.shifts import apply_shift, get_shift

    suite, max_drop, seed = _suite(args.criteria)
    site = site_version().frame.sample(frac=1.0, random_state=SEED).head(args.studies)
    labels = site["label"].tolist()
    clean = read_pixels([site_version().root / p for p in site["path"]])
    arms = [("clean", None, {})] + [
        (f"{item.shift} {level}", item.shift, params)
        for level in ("mild", "strong")
        for item in suite
        for params in [item.mild if level == "mild" else item.strong]
    ]
    refs = args.model or [f"{MODEL_NAME}@champion"]
    results: dict[str, Any] = {
        "studies": len(labels),
        "seed": seed,
        "max_drop": max_drop,
        "config": args.config.name if args.fast else None,
    }
    trained = common.bench_home(args.home, args.config, quick=args.quick)
    with trained if args.fast else _cli_home() as home:
        for ref in refs:
            loaded = home.registry.load(ref)
            thresholds = loaded.card.operating_thresholds(args.site)
            rows, record = [], {}
            for arm, shift, params in arms:
                pixels = clean
                if shift is not None:
                    fn = get_shift(shift, **params)
                    pixels = [apply_shift(x, fn, (seed, i)) for i, x in enumerate(clean)]
                judged = _judge(loaded, labels, pixels, thresholds)
                record[arm] = {**judged, "params": params}
                base = record["clean"]
                rows.append(
                    [
                        arm,
                        _ci(judged["sensitivity"]),
                        _ci(judged["specificity"]),
                        judged["specificity"][0] - base["specificity"][0],
                        _ci(judged["auc"]),
                        judged["flag_rate"],
                    ]
                )
                console.print(f"{ref}: {arm} done")
            results[f"{loaded.name}/{loaded.version}"] = {
                "threshold": thresholds,
                "site": args.site,
                "arms": record,
            }
            table(
                f"{loaded.name}/{loaded.version} on {len(labels)} site studies, threshold "
                f"{thresholds} (mild gated at drops {max_drop}, strong reported)",
                ["perturbation", "sensitivity", "specificity", "Δ spec", "AUC", "flagged"],
                rows,
            )
    write_json(args.out, "robustness.json", results)


def _ci(values: list[float]) -> str:
    value, low, high = values
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


class _cli_home:
    """$RADVIGIL_HOME's registry, opened as the CLI opens it."""

    def __enter__(self) -> Any:
        from types import SimpleNamespace

        from radvigil.cli.context import registry

        return SimpleNamespace(registry=registry())

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
