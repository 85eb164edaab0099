"""fp32 against int8 on the same version: screening metrics at the same operating threshold, and
throughput of the two ONNX graphs on this machine.

Trains ``configs/demo.yaml`` with ``quantize: true`` on the bundled data (or reuses ``--home``),
then evaluates both graphs on the bundled test split (the development batch) and on the stream's
test-folder studies (the site's other acquisition batch), with bootstrap CIs, and times
``OnnxEngine.run`` on batches of 1 and 16 (the service's ORT thread setting).

    .venv/bin/python -m bench.int8_compare [--home DIR] [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench import common

CONFIG = common.REPO / "configs" / "demo.yaml"


def throughput(path: Path, size: int, batch: int, seconds: float = 4.0) -> float:
    """Images per second of one graph on inputs of the model's size, over ``seconds``."""
    from radvigil.model.engine import OnnxEngine

    engine = OnnxEngine(path)
    x = np.zeros((batch, 1, size, size), dtype=np.float32)
    engine.run(x)  # warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.run(x)
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse or keep this home")
    parser.add_argument("--quick", action="store_true", help="one short epoch (smoke run)")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    from radvigil.loop.evaluation import evaluate_version

    with common.bench_home(args.home, CONFIG, args.quick, quantize=True) as home:
        fp32 = home.load()
        int8 = fp32.at_precision("int8")
        sets = {
            "bundled test split": home.catalog.load(home.data_version),
            "site batch": common.site_version(),
        }
        rows, payload = [], {"version": fp32.version, "sets": {}}
        for label, data in sets.items():
            for model in (fp32, int8):
                result, _ = evaluate_version(model, data, "test")
                f = result.finding("pneumonia")
                rows.append(
                    [
                        label,
                        model.precision,
                        result.n_items,
                        f.threshold,
                        common.ci_text(f.sensitivity),
                        common.ci_text(f.specificity),
                        common.ci_text(f.auc),
                        common.ci_text(f.ece),
                    ]
                )
                payload["sets"][f"{label}/{model.precision}"] = f.model_dump()
        common.table(
            "fp32 vs int8 at the same operating threshold (95% bootstrap CIs)",
            ["set", "graph", "n", "threshold", "sensitivity", "specificity", "AUC", "ECE"],
            rows,
        )
        size = int(fp32.card.input.size)
        speed = [
            [model.precision, batch, throughput(model.onnx_path, size, batch)]
            for batch in (1, 16)
            for model in (fp32, int8)
        ]
        common.table("ONNX Runtime throughput", ["graph", "batch", "images/s"], speed)
        payload["throughput"] = speed
        common.write_json(args.out, "int8_compare.json", payload)


if __name__ == "__main__":
    main()
