"""The inference service under load, measured honestly against bare ORT, a naive server and HTTP.

1. A model is trained with ``--config`` (default ``configs/fast.yaml``) into a home, or the
   champion of ``--home`` is reused.
2. Three servers run as **separate processes**, as in production: the real service
   (``python -m radvigil serve``: API-key auth, rate limiter, micro-batcher, ONNX Runtime with the
   default thread rule, per-prediction monitoring, prediction + audit logging through the
   background writer) with the **monitoring worker** beside it (``radvigil monitor worker``,
   windows of 50, every 5 s, niced as deployed); a naive FastAPI + eager PyTorch server (inference
   inline, one request at a time); and an HTTP-only floor (FastAPI reading the same multipart
   upload, answering a constant).
3. Bare ONNX Runtime: decode + preprocess + ORT of the same JPEGs in one process, at every thread
   count (1, 2) and batch size (1, 8, 16, 32); the **best** is the denominator.
4. Rounds (``--rounds``, default 3), each measuring every arm once, the order alternating
   (ABC, CBA, ...): the service closed-loop at 1/8/32/64 clients, the naive server and the floor at
   32, and bare ORT. Medians over rounds are reported with their spread (min-max).
5. Open loop at fixed offered rates (25/50/80 % of the service's measured capacity): Poisson
   arrivals, latency from each request's *scheduled* send time (no coordinated omission),
   p50/p95/p99 and error rate.
6. Monitoring's effect: open loop at 50 % with the worker paused (SIGSTOP) vs running (SIGCONT),
   and, as a control, with a one-thread busy loop under ``SCHED_IDLE`` instead (no I/O), in turn
   (ABCABC...); the worker is paused from the open-loop section on except in "running" phases, so
   each of those starts with a backlog of windows (of 50) to evaluate under load. The ratio of the
   median p99s; the control's ratio says how much of it any idle-class CPU work costs.

The load generator runs in its own process (httpx, asyncio), so it never shares a GIL with a
server; it does share the machine's cores, and its CPU share is printed. The load average before
and after is printed, with a warning when the machine was busy: on shared cores the numbers
measure the machine as much as the code. Targets are printed, never asserted.

    nice -n 10 .venv/bin/python -m bench.serve_load [--home PATH] [--config FILE] [--rounds 3]
        [--seconds 8] [--database-url postgresql://postgres@127.0.0.1:5432/test] [--quick]
    .venv/bin/python -m bench.serve_load --serve naive|floor --home PATH --port N  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from fastapi import File, UploadFile  # module level: FastAPI resolves annotations here

from bench import common
from radvigil.stack.processes import free_port

TARGET_VS_ORT = 0.6
TARGET_VS_NAIVE = 3.0
TARGET_P95_MS_AT_HALF = 100.0
TARGET_MONITORING_P99 = 1.5
NAIVE_CONCURRENCY = 32
OPEN_FRACTIONS = (0.25, 0.5, 0.8)
# the control arm of the monitoring phases: one busy thread under SCHED_IDLE, as the worker
# runs, doing no I/O, so what it costs serving is what any idle-class CPU work costs
IDLE_BURNER = (
    "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"
)
ORT_THREADS = (1, 2)
ORT_BATCHES = (1, 8, 16, 32)
ORT_IMAGES = 256
WORKER_EVERY_S = 5
MONITOR_WINDOW = 50  # the README's advice for the bundled data's reference
CLIENT_TIMEOUT_S = 120.0


# --- load generators (run in a spawned process) ---------------------------------------------


def closed_loop(url: str, path: str, headers: dict, payloads: list, clients: int, seconds: float):
    """``clients`` workers each posting back-to-back for ``seconds`` after a warm-up."""
    return asyncio.run(_closed(url, path, headers, payloads, clients, seconds))


def open_loop(url: str, path: str, headers: dict, payloads: list, rate: float, seconds: float):
    """Poisson arrivals at ``rate``/s for ``seconds``; latency counted from the scheduled time."""
    return asyncio.run(_open(url, path, headers, payloads, rate, seconds))


def _client(connections: int):
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(CLIENT_TIMEOUT_S))


async def _post(client, url, path, headers, payload) -> int | str:
    import httpx

    name, data = payload
    try:
        response = await client.post(
            url + path, headers=headers, files={"file": (name, data, "image/jpeg")}
        )
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return response.status_code


async def _closed(url, path, headers, payloads, clients, seconds) -> dict:
    async with _client(clients) as client:
        await asyncio.gather(
            *(
                _post(client, url, path, headers, payloads[i % len(payloads)])
                for i in range(clients)
            )
        )
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        issued = 0
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal issued
            while time.perf_counter() < deadline:
                i, issued = issued, issued + 1
                sent = time.perf_counter()
                status = await _post(client, url, path, headers, payloads[i % len(payloads)])
                if status == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors[str(status)] += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    return _summary(latencies, errors, wall, time.process_time() - cpu0) | {"clients": clients}


async def _open(url, path, headers, payloads, rate, seconds) -> dict:
    rng = np.random.default_rng(0)
    gaps = rng.exponential(1.0 / rate, size=int(rate * seconds * 2) + 10)
    starts = np.cumsum(gaps)
    starts = starts[starts < seconds]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with _client(512) as client:
        await asyncio.gather(*(_post(client, url, path, headers, payloads[i]) for i in range(4)))
        cpu0, t0 = time.process_time(), time.perf_counter()

        async def one(i: int, at: float) -> None:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await _post(client, url, path, headers, payloads[i % len(payloads)])
            if status == 200:
                latencies.append(time.perf_counter() - (t0 + at))  # from the scheduled time
            else:
                errors[str(status)] += 1

        await asyncio.gather(*(one(i, float(at)) for i, at in enumerate(starts)))
        wall = time.perf_counter() - t0
    return _summary(latencies, errors, wall, time.process_time() - cpu0) | {
        "offered_rps": rate,
        "requests": len(starts),
    }


def _summary(latencies: list[float], errors: Counter[str], wall: float, cpu: float) -> dict:
    """Throughput and latency percentiles of the successful requests; failures by HTTP status
    or client exception name (``error_kinds``)."""
    lat = np.asarray(latencies) * 1000
    pct = np.percentile(lat, [50, 95, 99]) if len(lat) else [float("nan")] * 3
    failed = sum(errors.values())
    total = len(lat) + failed
    return {
        "ok": len(lat),
        "errors": failed,
        "error_kinds": dict(errors),
        "error_rate": failed / total if total else 0.0,
        "throughput_rps": len(lat) / wall,
        "p50_ms": float(pct[0]),
        "p95_ms": float(pct[1]),
        "p99_ms": float(pct[2]),
        "client_cpu_share": cpu / wall,
    }


# --- bare ONNX Runtime -----------------------------------------------------------------------


def bare_ort(onnx_path: str, jpegs: list[bytes], seconds: float) -> dict:
    """Images/s of decode + preprocess + ORT at each thread count and batch size (best pass)."""
    from radvigil.data.io import read_image
    from radvigil.model.engine import OnnxEngine

    images = [jpegs[i % len(jpegs)] for i in range(ORT_IMAGES)]
    grid = {}
    for threads in ORT_THREADS:
        engine = OnnxEngine(Path(onnx_path), threads=threads)
        for batch in ORT_BATCHES:
            engine.predict([read_image(b).pixels for b in images[:batch]])  # warm-up
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / (len(ORT_THREADS) * len(ORT_BATCHES)):
                s = done % (ORT_IMAGES - batch + 1)
                engine.predict([read_image(b).pixels for b in images[s : s + batch]])
                done += batch
            grid[f"{threads}x{batch}"] = done / (time.perf_counter() - start)
    best = max(grid, key=grid.get)
    return {"grid": grid, "best": best, "best_images_per_s": grid[best]}


# --- the comparison servers (``--serve``) ----------------------------------------------------


def naive_app(loaded):
    """FastAPI + eager PyTorch, the way a first prototype is written: inference inline."""
    import torch
    from fastapi import FastAPI
    from PIL import Image as PILImage

    from radvigil.model.network import build_classifier
    from radvigil.model.preprocess import to_batch

    card = loaded.card
    classes = list(card.task.classes)
    size, temperature = int(card.input.size), float(card.temperature)
    model = build_classifier(card.backbone, len(classes))
    weights = loaded.folder / "radvigil" / "weights.pt"
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    app = FastAPI()

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> dict:
        data = await file.read()
        pixels = np.asarray(PILImage.open(io.BytesIO(data)).convert("L"))
        x = torch.from_numpy(to_batch([pixels], size))
        with torch.inference_mode():
            logits, _ = model(x)
        probs = torch.softmax(logits / temperature, dim=1)[0].tolist()
        return {"probabilities": dict(zip(classes, probs, strict=True))}

    return app


def floor_app():
    """The HTTP floor: FastAPI reading the same multipart upload and answering a constant."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/echo")
    async def echo(file: UploadFile = File(...)) -> dict:
        data = await file.read()
        return {"bytes": len(data)}

    return app


def serve_arm(kind: str, home: Path, port: int) -> None:
    import uvicorn

    common.quiet_libraries()
    app = naive_app(common.open_home(home).load()) if kind == "naive" else floor_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


# --- processes ---------------------------------------------------------------------------------


class Proc:
    """A child process with its log in a file; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def wait_http(url: str, headers: dict, proc: Proc, seconds: float = 900) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.log.name} exited: {proc.log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, headers=headers, timeout=5)
            if response.status_code == 200 and (
                not url.endswith("/ready") or response.json().get("ready")
            ):
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {seconds} s")


def wait_log(proc: Proc, text: str, seconds: float = 900) -> None:
    deadline = time.monotonic() + seconds
    while text not in proc.log.read_text():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.log.name}: no {text!r}: {proc.log.read_text()[-2000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server at ``server_url``, dropped afterwards."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"radvigil_bench_{time.time_ns()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def service_env(home: Path, database_url: str | None) -> dict[str, str]:
    """The service's and worker's environment: SQLite in the home unless ``database_url``."""
    root = home / "service"
    root.mkdir(parents=True, exist_ok=True)
    (root / "monitoring.yaml").write_text(f"windows: {{size: {MONITOR_WINDOW}}}\n")
    return {
        **os.environ,
        "RADVIGIL_HOME": str(root),
        "RADVIGIL_DATABASE_URL": database_url or f"sqlite:///{root / 'radvigil.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "RADVIGIL_MONITORING_CONFIG": str(root / "monitoring.yaml"),
        "RADVIGIL_MODEL_NAME": common.MODEL_NAME,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(common.REPO / "src"), os.environ.get("PYTHONPATH")])
        ),
        "MLFLOW_ENABLE_TELEMETRY": "false",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }


def api_key(env: dict[str, str]) -> str:
    from radvigil.store import Database, KeyStore, upgrade_database

    db = Database(env["RADVIGIL_DATABASE_URL"])
    upgrade_database(db)
    token, _ = KeyStore(db).create(f"bench-{time.time_ns()}", "service", rate_limit=10_000_000)
    db.dispose()
    return token


def payloads(n: int) -> list[tuple[str, bytes]]:
    """``n`` real bundled test JPEGs, alternating normal and pneumonia."""
    frame = common.bundled_frame("test").sort_values("path")
    normal = frame[frame["label"] == "normal"]["path"].tolist()
    pneumonia = frame[frame["label"] == "pneumonia"]["path"].tolist()
    paths = [p for pair in zip(normal, pneumonia, strict=False) for p in pair][:n]
    return [(Path(p).name, (common.BUNDLED / p).read_bytes()) for p in paths]


# --- main ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    images = payloads(args.images)
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    spawn = multiprocessing.get_context("spawn")
    load_before = os.getloadavg()
    with (
        common.bench_home(args.home, args.config, args.quick, **overrides) as home,
        concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool,
        contextlib.ExitStack() as stack,
    ):
        loaded = home.load()
        database = (
            stack.enter_context(fresh_database(args.database_url)) if args.database_url else None
        )
        env = service_env(home.root, database)
        token = api_key(env)
        headers = {"X-API-Key": token}
        logs = home.root / "service"
        ports = {name: free_port() for name in ("service", "naive", "floor")}
        me = [sys.executable, "-m", "bench.serve_load"]  # run from the repo root
        procs = {
            "service": Proc(
                [sys.executable, "-m", "radvigil", "serve", "--port", str(ports["service"])],
                env,
                logs / "service.log",
            ),
            "naive": Proc(
                [*me, "--serve", "naive", "--home", str(home.root), "--port", str(ports["naive"])],
                env,
                logs / "naive.log",
            ),
            "floor": Proc(
                [*me, "--serve", "floor", "--home", str(home.root), "--port", str(ports["floor"])],
                env,
                logs / "floor.log",
            ),
        }
        for proc in procs.values():
            stack.callback(proc.stop)
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        wait_http(f"{urls['service']}/ready", headers, procs["service"])
        wait_http(f"{urls['naive']}/docs", {}, procs["naive"])
        wait_http(f"{urls['floor']}/docs", {}, procs["floor"])
        worker = Proc(
            [sys.executable, "-m", "radvigil", "monitor", "worker", "--every", str(WORKER_EVERY_S)],
            env,
            logs / "worker.log",
        )
        stack.callback(worker.stop)
        wait_log(worker, "monitoring worker")

        def closed(arm: str, clients: int) -> dict:
            path = {"service": "/v1/predict", "naive": "/predict", "floor": "/echo"}[arm]
            hdrs = headers if arm == "service" else {}
            fut = pool.submit(closed_loop, urls[arm], path, hdrs, images, clients, args.seconds)
            return fut.result()

        def opened(rate: float) -> dict:
            fut = pool.submit(
                open_loop, urls["service"], "/v1/predict", headers, images, rate, args.seconds
            )
            return fut.result()

        rounds: list[dict] = []
        for r in range(args.rounds):
            arms = ["service", "naive", "floor", "ort"]
            order = arms if r % 2 == 0 else arms[::-1]
            common.console.print(f"round {r + 1}/{args.rounds}: {' -> '.join(order)}")
            result: dict = {}
            for arm in order:
                if arm == "service":
                    result["service"] = {c: closed("service", c) for c in args.concurrency}
                elif arm == "ort":
                    result["ort"] = bare_ort(
                        str(loaded.onnx_path), [b for _, b in images], args.ort_seconds
                    )
                else:
                    result[arm] = closed(arm, NAIVE_CONCURRENCY)
            rounds.append(result)

        capacity = float(
            np.median([max(v["throughput_rps"] for v in r["service"].values()) for r in rounds])
        )
        common.console.print(f"open loop at {OPEN_FRACTIONS} of {capacity:.0f} req/s ...")
        worker.signal(signal.SIGSTOP)  # from here on the worker runs only in "running" phases,
        open_rows = {f: opened(f * capacity) for f in OPEN_FRACTIONS}  # so it has a backlog

        burner = Proc([sys.executable, "-c", IDLE_BURNER], env, logs / "burner.log")
        stack.callback(burner.stop)
        burner.signal(signal.SIGSTOP)
        common.console.print(
            "monitoring paused vs running vs an idle-class CPU burner, open loop at 50 % "
            "(ABCABC...) ..."
        )
        monitoring: list[dict] = []
        for _ in range(args.rounds):
            phases = {"paused": opened(0.5 * capacity)}
            for state, proc in (("running", worker), ("idle burner", burner)):
                proc.signal(signal.SIGCONT)
                phases[state] = opened(0.5 * capacity)
                proc.signal(signal.SIGSTOP)
            monitoring.append(phases)
        burner.stop()
        worker.stop()
        worker_log = worker.log.read_text()
    load_after = os.getloadavg()
    return {
        "model": {
            "backbone": loaded.card.backbone,
            "input_size": loaded.card.input.size,
            "version": loaded.version,
            "config": str(args.config),
        },
        "database": "postgresql" if args.database_url else "sqlite",
        "rounds": rounds,
        "capacity_rps": capacity,
        "open_loop": {str(k): v for k, v in open_rows.items()},
        "monitoring": monitoring,
        "worker_windows": worker_log.count("new windows of"),
        "load_before": load_before,
        "load_after": load_after,
    }


def _median_spread(values: list[float]) -> tuple[float, str]:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return float("nan"), "-"
    return float(np.median(values)), f"{min(values):.4g}-{max(values):.4g}"


def report(result: dict, args: argparse.Namespace) -> dict:
    rounds, m = result["rounds"], result["model"]
    cores = os.cpu_count() or 1
    busy = max(result["load_before"][0], result["load_after"][0]) > 0.5 * cores
    common.console.print(
        f"load average before {result['load_before'][0]:.2f} / after "
        f"{result['load_after'][0]:.2f} on {cores} cores; prediction store: {result['database']}"
    )
    if busy:
        common.console.print(
            "[bold yellow]WARNING: the machine was busy (load average above half the cores): "
            "other processes took CPU from every arm; compare ratios, not absolute numbers."
            "[/bold yellow]"
        )
    rows = []
    for clients in args.concurrency:
        levels = [r["service"][clients] for r in rounds]
        rps, spread = _median_spread([v["throughput_rps"] for v in levels])
        rows.append(
            (
                f"service, {clients} clients",
                rps,
                spread,
                _median_spread([v["p50_ms"] for v in levels])[0],
                _median_spread([v["p95_ms"] for v in levels])[0],
                _median_spread([v["p99_ms"] for v in levels])[0],
                sum(v["errors"] for v in levels),
                _median_spread([v["client_cpu_share"] for v in levels])[0],
            )
        )
    for arm, label in (("naive", "naive eager PyTorch"), ("floor", "HTTP floor (no model)")):
        levels = [r[arm] for r in rounds]
        rps, spread = _median_spread([v["throughput_rps"] for v in levels])
        rows.append(
            (
                f"{label}, {NAIVE_CONCURRENCY} clients",
                rps,
                spread,
                _median_spread([v["p50_ms"] for v in levels])[0],
                _median_spread([v["p95_ms"] for v in levels])[0],
                _median_spread([v["p99_ms"] for v in levels])[0],
                sum(v["errors"] for v in levels),
                _median_spread([v["client_cpu_share"] for v in levels])[0],
            )
        )
    ort_best, ort_spread = _median_spread([r["ort"]["best_images_per_s"] for r in rounds])
    bests = sorted({r["ort"]["best"] for r in rounds})
    rows.append(
        (
            f"bare ORT, decode incl., best of threads x batch ({', '.join(bests)})",
            ort_best,
            ort_spread,
            None,
            None,
            None,
            0,
            None,
        )
    )
    common.table(
        f"Closed loop, {len(rounds)} interleaved rounds, median (spread) — {m['backbone']} "
        f"{m['input_size']}px, real JPEGs, monitoring worker running",
        ["arm", "req/s", "spread", "p50 ms", "p95 ms", "p99 ms", "errors", "client CPU"],
        rows,
    )
    failures: Counter[str] = Counter()
    for r in rounds:
        for level in [*r["service"].values(), r["naive"], r["floor"]]:
            failures.update(level.get("error_kinds", {}))
    if failures:
        common.console.print(f"failed requests by HTTP status or client error: {dict(failures)}")
    grid = rounds[-1]["ort"]["grid"]
    common.table(
        "Bare ORT grid (last round), images/s with JPEG decode",
        ["threads x batch", *grid],
        [("images/s", *grid.values())],
    )
    open_rows = [
        (
            f"{float(f):.0%} of capacity",
            v["offered_rps"],
            v["throughput_rps"],
            v["p50_ms"],
            v["p95_ms"],
            v["p99_ms"],
            v["error_rate"],
        )
        for f, v in result["open_loop"].items()
    ]
    common.table(
        f"Open loop (Poisson), capacity {result['capacity_rps']:.0f} req/s",
        ["offered", "req/s offered", "req/s done", "p50 ms", "p95 ms", "p99 ms", "error rate"],
        open_rows,
    )
    mon = result["monitoring"]
    p99 = {state: _median_spread([p[state]["p99_ms"] for p in mon]) for state in mon[0]}
    paused, running = p99["paused"], p99["running"]
    common.table(
        f"Monitoring worker paused vs running, and an idle-class CPU burner instead (open loop "
        f"50 %, {result['worker_windows']} windows evaluated by the worker in the whole run)",
        ["worker", "p50 ms", "p95 ms", "p99 ms (median)", "p99 spread"],
        [
            (
                state,
                _median_spread([p[state]["p50_ms"] for p in mon])[0],
                _median_spread([p[state]["p95_ms"] for p in mon])[0],
                values[0],
                values[1],
            )
            for state, values in p99.items()
        ],
    )
    peak = max(rows[: len(args.concurrency)], key=lambda row: row[1])
    at32 = next(r for r, c in zip(rows, args.concurrency, strict=False) if c == NAIVE_CONCURRENCY)
    naive = rows[len(args.concurrency)][1]
    ratios = {
        "service_peak_vs_bare_ort": peak[1] / ort_best,
        "service_vs_naive_at_32": at32[1] / naive if naive else float("nan"),
        "p95_ms_open_loop_50": result["open_loop"]["0.5"]["p95_ms"],
        "monitoring_p99_ratio": running[0] / paused[0] if paused[0] else float("nan"),
        "idle_burner_p99_ratio": (
            p99["idle burner"][0] / paused[0] if "idle burner" in p99 and paused[0] else None
        ),
    }
    common.table(
        "Targets (printed, not asserted)",
        ["measure", "value", "target", ""],
        [
            (
                f"service peak ({peak[0]}) / best bare ORT incl. decode",
                ratios["service_peak_vs_bare_ort"],
                f">= {TARGET_VS_ORT}",
                _verdict(ratios["service_peak_vs_bare_ort"] >= TARGET_VS_ORT),
            ),
            (
                f"service / naive at {NAIVE_CONCURRENCY} clients",
                ratios["service_vs_naive_at_32"],
                f">= {TARGET_VS_NAIVE}",
                _verdict(ratios["service_vs_naive_at_32"] >= TARGET_VS_NAIVE),
            ),
            (
                "p95 ms, open loop at 50 % of capacity",
                ratios["p95_ms_open_loop_50"],
                f"<= {TARGET_P95_MS_AT_HALF:.0f}",
                _verdict(ratios["p95_ms_open_loop_50"] <= TARGET_P95_MS_AT_HALF),
            ),
            (
                "p99 with the monitoring worker running / paused",
                ratios["monitoring_p99_ratio"],
                f"<= {TARGET_MONITORING_P99}",
                _verdict(ratios["monitoring_p99_ratio"] <= TARGET_MONITORING_P99),
            ),
        ],
    )
    if ratios["idle_burner_p99_ratio"] is not None:
        common.console.print(
            f"control: an idle-class busy loop instead of the worker moves p99 "
            f"{ratios['idle_burner_p99_ratio']:.2f}x (what any SCHED_IDLE CPU work costs here)"
        )
    return {**ratios, "busy_machine": busy}


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse/keep a trained home here")
    parser.add_argument("--config", type=Path, default=common.FAST_CONFIG)
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--ort-seconds", type=float, default=8.0, help="bare-ORT grid seconds")
    parser.add_argument("--images", type=int, default=64, help="distinct JPEGs sent")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny model, 1 round, 2 s each")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (e.g. postgresql://postgres@127.0.0.1:5432/test) where a fresh "
        "database is created for the run and dropped after; default SQLite in the home",
    )
    parser.add_argument("--serve", choices=("naive", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_arm(args.serve, args.home, args.port)
        return
    common.quiet_libraries()
    if args.quick:
        args.rounds, args.seconds, args.ort_seconds = 1, 2.0, 2.0
    if NAIVE_CONCURRENCY not in args.concurrency:
        args.concurrency.append(NAIVE_CONCURRENCY)
    common.console.print(common.machine_line())
    result = run(args)
    ratios = report(result, args)
    common.write_json(
        args.out, "serve_load.json", {"quick": args.quick, **result, "summary": ratios}
    )


if __name__ == "__main__":
    main()
