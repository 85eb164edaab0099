"""How long bootstrap confidence intervals take: vectorised radvigil vs a per-resample loop.

Predictions come from a logistic regression on real PneumoniaMNIST images (28x28 Kermany);
sets of 1,000 and 5,000 images are drawn from them with replacement. Prints a table and writes
``bootstrap_speed.json`` (render it with ``scripts/results_pages.py``).

    python -m bench.bootstrap_speed [--data PATH_TO_NPZ] [--out bench/results]
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score, roc_auc_score

from bench import common
from radvigil.evaluation import EvaluationOptions, evaluate
from radvigil.evaluation.bootstrap import estimate
from radvigil.evaluation.statistics import finding_statistic

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RADVIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_DATA = SHARED / "medmnist" / "pneumoniamnist_balanced_28.npz"
CLASSES = ["normal", "pneumonia"]
LOOP_RESAMPLES = 100  # the loop baseline is timed on this many and scaled up


def predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path)
    x = {
        s: data[f"{s}_images"].reshape(len(data[f"{s}_images"]), -1) / 255.0
        for s in ("train", "val", "test")
    }
    y = {s: data[f"{s}_labels"].ravel() for s in ("train", "val", "test")}
    model = LogisticRegression(C=0.01, max_iter=300).fit(x["train"], y["train"])
    held = np.concatenate([y["val"], y["test"]])
    return held, model.predict_proba(np.concatenate([x["val"], x["test"]]))


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def loop_baseline(y: np.ndarray, p: np.ndarray, n_resamples: int) -> float:
    """Seconds for sensitivity + AUC CIs with one scikit-learn call per resample."""
    rng = np.random.default_rng(0)
    flagged = p[:, 1] >= 0.5

    def run() -> None:
        for _ in range(LOOP_RESAMPLES):
            idx = rng.integers(0, y.size, y.size)
            recall_score(y[idx], flagged[idx])
            roc_auc_score(y[idx], p[idx, 1])

    return timed(run) * n_resamples / LOOP_RESAMPLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    y_all, p_all = predictions(args.data)
    rng = np.random.default_rng(0)
    header = ("images", "resamples", "finding CIs (s)", "full evaluate (s)", "sklearn loop (s)")
    print(" | ".join(header))
    print(" | ".join("-" * len(h) for h in header))
    rows = []
    for n in (1000, 5000):
        idx = rng.integers(0, y_all.size, n)
        y, p = y_all[idx], p_all[idx]
        labels = np.array(CLASSES)[y]
        for resamples in (1000, 2000):
            statistic = finding_statistic(y, p, np.array([1]), np.array([0.5]))
            core = timed(partial(estimate, statistic, n, n_resamples=resamples, seed=0, level=0.95))
            options = EvaluationOptions(n_resamples=resamples)
            full = timed(
                partial(
                    evaluate, labels, p, CLASSES, ["pneumonia"], {"pneumonia": 0.5}, options=options
                )
            )
            loop = loop_baseline(y, p, resamples)
            print(f"{n:>6} | {resamples:>9} | {core:>15.2f} | {full:>17.2f} | {loop:>16.1f}")
            rows.append(
                {
                    "images": n,
                    "resamples": resamples,
                    "finding_ci_s": core,
                    "evaluate_s": full,
                    "sklearn_loop_s": loop,
                }
            )
    common.write_json(args.out, "bootstrap_speed.json", {"data": args.data.name, "rows": rows})


if __name__ == "__main__":
    main()
