"""Throughput and latency through nginx with 1 and 2 service replicas (the loopback stack).

1. ``radvigil.stack`` starts PostgreSQL, an MLflow server (PostgreSQL backend), two
   ``radvigil serve`` replicas (ONNX Runtime 1 thread each, shared rate limits in PostgreSQL),
   the monitoring worker and nginx, all on 127.0.0.1.
2. A fast-config model (``--epochs``, default 2) is trained here into the stack's MLflow server
   and made champion; the replicas load it from the registry.
3. nginx's upstream is set to replica 0 only, then to both (config rewritten, ``nginx -s
   reload``), and a load generator in a separate process posts real bundled JPEGs to
   ``/v1/predict`` through nginx at each concurrency for ``--seconds`` after a warm-up.

Client latency is send to full response. The client, nginx, both replicas, PostgreSQL, MLflow
and the worker share this machine's cores: on 2 cores a second replica can only add what one
replica leaves idle (its Python request handling while the other runs the model); on N cores
with N/2 replicas of 2 threads each the gain would approach N/2. The load average is printed.

    .venv/bin/python -m bench.stack_load [--concurrency 8 32] [--seconds 20] [--epochs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from bench import common

BUNDLED_TEST = common.BUNDLED / "kermany" / "test"


def drive(url: str, token: str, concurrency: int, seconds: float) -> dict:
    """Warm up, then post JPEGs from ``concurrency`` workers for ``seconds``; return timings."""
    return asyncio.run(_drive(url, token, concurrency, seconds))


async def _drive(url: str, token: str, concurrency: int, seconds: float) -> dict:
    import httpx

    payloads = [(p.name, p.read_bytes()) for p in sorted(BUNDLED_TEST.glob("*/*.jpg"))[:64]]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:

        async def one(i: int) -> tuple[float, int | str, str]:
            name, data = payloads[i % len(payloads)]
            start = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/predict",
                    headers={"X-API-Key": token},
                    files={"file": (name, data, "image/jpeg")},
                )
            except httpx.HTTPError as exc:
                return time.perf_counter() - start, type(exc).__name__, ""
            upstream = response.headers.get("X-Upstream", "")
            return time.perf_counter() - start, response.status_code, upstream

        await asyncio.gather(*(one(i) for i in range(2 * concurrency)))
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        upstreams: dict[str, int] = {}
        issued, start = 0, time.perf_counter()

        async def worker() -> None:
            nonlocal issued
            while time.perf_counter() - start < seconds:
                issued += 1
                took, status, upstream = await one(issued)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                upstreams[upstream] = upstreams.get(upstream, 0) + 1
                if status == 200:
                    latencies.append(took)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": issued,
        "ok": len(lat),
        "statuses": statuses,
        "replicas_answering": len([u for u in upstreams if u]),
        "throughput_rps": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p95_ms": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
    }


def train_champion(stack, epochs: int) -> str:
    from radvigil.data.catalog import DatasetCatalog
    from radvigil.data.importers import from_csv
    from radvigil.loop.training import run_training
    from radvigil.model.config import load_config
    from radvigil.registry import Registry

    root = stack.root / "trainer"
    catalog = DatasetCatalog(root / "datasets")
    version = catalog.save(from_csv(common.BUNDLED / "manifest.csv").version)
    registry = Registry(stack.tracking_uri, root / "mlartifacts", root / "model-cache")
    cfg = load_config(common.FAST_CONFIG).model_copy(update={"epochs": epochs})
    outcome = run_training(cfg, version, catalog, registry)
    registry.set_alias(outcome.name, "champion", outcome.version, "bench", "stack benchmark")
    return f"{outcome.name}/{outcome.version}"


def run(args: argparse.Namespace) -> dict:
    from radvigil.stack import Stack, StackConfig
    from radvigil.stack.topology import HTTP_TIMEOUT

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT)
    stack = Stack(StackConfig(replicas=2, workers=1, monitor_every=30))
    results = []
    try:
        common.console.print(f"starting PostgreSQL and MLflow under {stack.root} ...")
        stack.start_backends()
        model = train_champion(stack, args.epochs)
        common.console.print(f"champion {model}; starting 2 replicas, the worker and nginx ...")
        stack.start_serving()
        token = stack.admin_key("bench")
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            for replicas in args.replicas:
                stack.set_upstreams(list(range(replicas)))
                for concurrency in args.concurrency:
                    load_before = os.getloadavg()[0]
                    raw = pool.submit(drive, stack.url, token, concurrency, args.seconds).result()
                    raw.update(
                        replicas=replicas, load_before=load_before, load_after=os.getloadavg()[0]
                    )
                    results.append(raw)
                    common.console.print(
                        f"{replicas} replica(s), {concurrency} clients: "
                        f"{raw['throughput_rps']:.1f} req/s, p95 {raw['p95_ms']:.0f} ms"
                    )
    finally:
        stack.stop()
    return {"machine": common.machine(), "model": "fast", "epochs": args.epochs, "runs": results}


def report(result: dict) -> None:
    common.table(
        "through nginx (POST /v1/predict, real JPEGs)",
        ["replicas", "clients", "requests", "non-200", "req/s", "p50 ms", "p95 ms", "load avg"],
        [
            [
                r["replicas"],
                r["concurrency"],
                r["requests"],
                r["requests"] - r["ok"],
                r["throughput_rps"],
                r["p50_ms"],
                r["p95_ms"],
                f"{r['load_before']:.1f} -> {r['load_after']:.1f}",
            ]
            for r in result["runs"]
        ],
    )
    by = {(r["replicas"], r["concurrency"]): r for r in result["runs"]}
    for concurrency in sorted({r["concurrency"] for r in result["runs"]}):
        one, two = by.get((1, concurrency)), by.get((2, concurrency))
        if one and two and one["throughput_rps"]:
            gain = two["throughput_rps"] / one["throughput_rps"]
            common.console.print(f"{concurrency} clients: 2 replicas / 1 replica = {gain:.2f}x")
    common.console.print(common.machine_line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    args = parser.parse_args()
    common.quiet_libraries()
    result = run(args)
    report(result)
    common.console.print(f"wrote {common.write_json(args.out, 'stack_load', result)}")


if __name__ == "__main__":
    main()
