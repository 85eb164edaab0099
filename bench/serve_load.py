"""The inference service under load: latency and throughput vs bare ORT and a naive server.

1. A fast-config model is trained into a temporary home (or the champion of ``--home`` is reused).
2. The normal service is built (``create_app``: API-key auth, rate limiter, micro-batcher, ONNX
   Runtime, per-prediction monitoring (image statistics, QC, OOD score), prediction + audit
   logging to SQLite through the background writer, Prometheus metrics) and served by a real
   uvicorn server on 127.0.0.1. A ``service``-role key with a very high rate limit is created.
3. A load generator in a *separate process* (so it does not share the server's GIL) drives
   ``POST /v1/predict`` with real bundled JPEGs from ``concurrency`` asyncio workers on one
   ``httpx.AsyncClient``: first ``2 x concurrency`` untimed warm-up requests, then ``--requests``
   timed ones or ``--seconds``, whichever ends first. Latency is client-side (send to full
   response); throughput is successful responses / wall time of the timed phase.
4. Bare ONNX Runtime throughput of the same ONNX file, same thread count as the service
   (preprocessing = resize + normalise of decoded pixels; also with JPEG decoding), batch 16 and 32,
   best of 3 passes over 512 images (the same JPEGs, cycled).
5. A naive server: FastAPI + eager PyTorch from the version's ``weights.pt``, one request at a
   time (inference inline in an ``async`` endpoint), no auth/monitoring/logging, driven the same
   way at concurrency 32; and an HTTP floor (FastAPI reading the same multipart upload and
   answering a constant, no model) to show what the web stack alone costs on this machine.

"in-handler" latency is the service's own ``latency_ms`` (from the start of the route function,
after upload parsing and auth, to the response being built). The client, the server and ORT
share this machine's cores, so end-to-end numbers include the client's CPU use (printed).
Targets are printed next to the numbers, never asserted.

    .venv/bin/python bench/serve_load.py [--home PATH] [--concurrency 1 8 32 64]
        [--requests 600] [--seconds 30] [--config configs/fast.yaml] [--epochs N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import multiprocessing
import time
from pathlib import Path

import common
import numpy as np
from fastapi import File, UploadFile  # module level: FastAPI resolves annotations here

TARGET_E2E_VS_ORT = 0.6
TARGET_P95_MS_AT_32 = 150.0
TARGET_VS_NAIVE = 3.0
NAIVE_CONCURRENCY = 32
ORT_IMAGES = 512  # images per bare-ORT pass (best of 3 passes)


# --- load generator (runs in a spawned process) ---------------------------------------------


def drive(
    url: str,
    path: str,
    headers: dict[str, str],
    payloads: list[tuple[str, bytes]],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
) -> dict:
    """Warm up, then post ``payloads`` round-robin from ``concurrency`` workers; return timings."""
    return asyncio.run(_drive(url, path, headers, payloads, concurrency, max_requests, max_seconds))


async def _drive(url, path, headers, payloads, concurrency, max_requests, max_seconds) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

        async def one(i: int) -> tuple[float, int | str, float | None]:
            name, data = payloads[i % len(payloads)]
            start = time.perf_counter()
            try:
                response = await client.post(
                    path, headers=headers, files={"file": (name, data, "image/jpeg")}
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                return time.perf_counter() - start, type(exc).__name__, None
            seconds = time.perf_counter() - start
            inside = response.json().get("latency_ms") if status == 200 else None
            return seconds, status, inside

        await asyncio.gather(*(one(i) for i in range(2 * concurrency)))  # warm-up
        latencies: list[float] = []
        handler_ms: list[float] = []
        statuses: dict[int | str, int] = {}
        issued = 0
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                i = issued
                issued += 1
                seconds, status, inside = await one(i)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(seconds)
                if inside is not None:
                    handler_ms.append(inside)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": issued,
        "wall_s": wall,
        "client_cpu_s": time.process_time() - cpu0,
        "latencies_s": latencies,
        "handler_ms": handler_ms,
        "statuses": statuses,
    }


def summarise(raw: dict) -> dict:
    lat = np.asarray(raw["latencies_s"]) * 1000
    ok = len(lat)
    pct = np.percentile(lat, [50, 95, 99]) if ok else [np.nan] * 3
    return {
        "concurrency": raw["concurrency"],
        "requests": raw["requests"],
        "ok": ok,
        "errors": raw["requests"] - ok,
        "statuses": {str(k): v for k, v in raw["statuses"].items()},
        "wall_s": raw["wall_s"],
        "throughput_rps": ok / raw["wall_s"],
        "p50_ms": float(pct[0]),
        "p95_ms": float(pct[1]),
        "p99_ms": float(pct[2]),
        "mean_ms": float(lat.mean()) if ok else float("nan"),
        "client_cpu_share": raw["client_cpu_s"] / raw["wall_s"],
        "handler_p50_ms": float(np.median(raw["handler_ms"])) if raw["handler_ms"] else None,
    }


# --- the pieces under test --------------------------------------------------------------------


def payloads(n: int) -> list[tuple[str, bytes]]:
    """``n`` real bundled test JPEGs, alternating normal and pneumonia."""
    frame = common.bundled_frame("test").sort_values("path")
    normal = frame[frame["label"] == "normal"]["path"].tolist()
    pneumonia = frame[frame["label"] == "pneumonia"]["path"].tolist()
    paths = [p for pair in zip(normal, pneumonia, strict=False) for p in pair][:n]
    return [(Path(p).name, (common.BUNDLED / p).read_bytes()) for p in paths]


def bare_ort(onnx_path: Path, threads: int, images: list[bytes], batches: list[int]) -> list[dict]:
    """Images/s of OnnxEngine.predict (resize + normalise + ORT), and with JPEG decoding too."""
    from radvigil.data.io import read_image
    from radvigil.model.engine import OnnxEngine

    engine = OnnxEngine(onnx_path, threads=threads)
    images = [images[i % len(images)] for i in range(ORT_IMAGES)]  # cycle the distinct JPEGs
    decoded = [read_image(b).pixels for b in images]
    rows = []
    for batch in batches:
        engine.predict(decoded[:batch])  # warm-up

        def pixels_run(batch=batch) -> None:
            for s in range(0, len(decoded) - batch + 1, batch):
                engine.predict(decoded[s : s + batch])

        def decode_run(batch=batch) -> None:
            for s in range(0, len(images) - batch + 1, batch):
                engine.predict([read_image(b).pixels for b in images[s : s + batch]])

        n = (len(decoded) // batch) * batch
        seconds, _ = common.timed(pixels_run, repeat=3)
        seconds_decode, _ = common.timed(decode_run, repeat=3)
        rows.append(
            {
                "batch": batch,
                "images": n,
                "images_per_s": n / seconds,
                "images_per_s_with_decode": n / seconds_decode,
            }
        )
    return rows


def naive_app(loaded):
    """FastAPI + eager PyTorch, the way a first prototype is written: inference inline."""
    import torch
    from fastapi import FastAPI
    from PIL import Image as PILImage

    from radvigil.model.network import build_classifier
    from radvigil.model.preprocess import to_batch

    card = loaded.card
    classes = list(card["task"]["classes"])
    size, temperature = int(card["input"]["size"]), float(card["temperature"])
    model = build_classifier(card["backbone"], len(classes))
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


def wait_ready(url: str, headers: dict[str, str], seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/ready", headers=headers, timeout=10)
        if response.status_code == 200 and response.json().get("ready"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"service not ready after {seconds} s: {response.text}")


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    from radvigil.config import Settings
    from radvigil.service.app import create_app
    from radvigil.store import KeyStore

    images = payloads(args.images)
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    spawn = multiprocessing.get_context("spawn")
    with (
        common.bench_home(args.home, args.config, args.quick, **overrides) as home,
        concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as client,
    ):
        loaded = home.load()
        settings = Settings(home=home.root / "service")
        app = create_app(settings, registry=home.registry)
        state = app.state.radvigil
        token, _ = KeyStore(state.db).create(
            f"bench-{time.time_ns()}", "service", rate_limit=10_000_000
        )
        headers = {"X-API-Key": token}
        levels = []
        with common.LiveServer(app) as server:
            wait_ready(server.url, headers)
            logged_before = state.predictions.count()
            for c in args.concurrency:
                common.console.print(f"radvigil /v1/predict, {c} concurrent clients ...")
                raw = client.submit(
                    drive, server.url, "/v1/predict", headers, images, c, args.requests,
                    args.seconds,
                ).result()  # fmt: skip
                levels.append(summarise(raw))
            state.writer.flush()
            logged = state.predictions.count() - logged_before
        common.console.print("bare ONNX Runtime ...")
        ort_rows = bare_ort(
            loaded.onnx_path, settings.ort_threads, [b for _, b in images], args.batches
        )
        common.console.print(f"naive FastAPI + PyTorch, {NAIVE_CONCURRENCY} concurrent clients ...")
        with common.LiveServer(naive_app(loaded)) as server:
            raw = client.submit(
                drive, server.url, "/predict", {}, images, NAIVE_CONCURRENCY, args.requests,
                args.seconds,
            ).result()  # fmt: skip
            naive = summarise(raw)
        common.console.print(f"HTTP floor (no model), {NAIVE_CONCURRENCY} concurrent clients ...")
        with common.LiveServer(floor_app()) as server:
            raw = client.submit(
                drive, server.url, "/echo", {}, images, NAIVE_CONCURRENCY, args.requests,
                args.seconds,
            ).result()  # fmt: skip
            floor = summarise(raw)
    return {
        "model": {
            "backbone": loaded.card["backbone"],
            "input_size": loaded.card["input"]["size"],
            "version": loaded.version,
        },
        "settings": {
            "ort_threads": settings.ort_threads,
            "batch_max_size": settings.batch_max_size,
            "batch_max_wait_ms": settings.batch_max_wait_ms,
        },
        "radvigil": levels,
        "predictions_logged": logged,
        "bare_ort": ort_rows,
        "naive": naive,
        "http_floor": floor,
    }


def report(result: dict) -> dict:
    levels, naive, ort_rows = result["radvigil"], result["naive"], result["bare_ort"]
    if result["predictions_logged"] is not None:
        common.console.print(
            f"predictions logged to the DB during the run: {result['predictions_logged']}"
        )
    m = result["model"]
    common.table(
        f"radvigil service, POST /v1/predict ({m['backbone']} {m['input_size']}px, "
        f"real bundled JPEGs, auth + monitoring + DB logging on)",
        [
            "clients",
            "requests",
            "errors",
            "req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "in-handler p50 ms",
            "client CPU share",
            "non-200",
        ],
        [
            (
                r["concurrency"],
                r["requests"],
                r["errors"],
                r["throughput_rps"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["handler_p50_ms"],
                r["client_cpu_share"],
                _non_ok(r["statuses"]),
            )
            for r in levels
        ],
    )
    common.table(
        f"Bare ONNX Runtime, same model, {result['settings']['ort_threads']} threads",
        ["batch", "images", "img/s (pixels: resize+normalise+ORT)", "img/s (+ JPEG decode)"],
        [
            (r["batch"], r["images"], r["images_per_s"], r["images_per_s_with_decode"])
            for r in ort_rows
        ],
    )
    common.table(
        "Comparison servers (same client, same JPEGs)",
        ["server", "clients", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"],
        [
            (
                name,
                r["concurrency"],
                r["requests"],
                r["errors"],
                r["throughput_rps"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
            )
            for name, r in (
                ("naive FastAPI + eager PyTorch, 1 request at a time", naive),
                ("HTTP floor: FastAPI multipart upload, no model", result["http_floor"]),
            )
        ],
    )
    peak = max(levels, key=lambda r: r["throughput_rps"])
    at32 = next((r for r in levels if r["concurrency"] == NAIVE_CONCURRENCY), None)
    ort16 = next((r for r in ort_rows if r["batch"] == 16), ort_rows[0])
    e2e_vs_ort = peak["throughput_rps"] / ort16["images_per_s"]
    e2e_vs_ort_decode = peak["throughput_rps"] / ort16["images_per_s_with_decode"]
    vs_naive = (
        at32["throughput_rps"] / naive["throughput_rps"]
        if at32 and naive["throughput_rps"] > 0
        else float("nan")
    )
    p95 = at32["p95_ms"] if at32 else float("nan")
    rows = [
        (
            f"end-to-end / bare ORT (peak {peak['throughput_rps']:.0f} req/s at "
            f"{peak['concurrency']} clients vs ORT batch {ort16['batch']})",
            e2e_vs_ort,
            f">= {TARGET_E2E_VS_ORT}x",
            _verdict(e2e_vs_ort >= TARGET_E2E_VS_ORT),
        ),
        (
            "  same, bare ORT incl. JPEG decode",
            e2e_vs_ort_decode,
            "(context)",
            "",
        ),
        (
            f"p95 latency at {NAIVE_CONCURRENCY} clients (ms)",
            p95,
            f"<= {TARGET_P95_MS_AT_32:.0f} ms",
            _verdict(p95 <= TARGET_P95_MS_AT_32),
        ),
        (
            f"radvigil / naive throughput at {NAIVE_CONCURRENCY} clients",
            vs_naive,
            f">= {TARGET_VS_NAIVE}x",
            _verdict(vs_naive >= TARGET_VS_NAIVE),
        ),
    ]
    common.table("Targets (printed, not asserted)", ["measure", "value", "target", ""], rows)
    return {
        "end_to_end_vs_bare_ort": e2e_vs_ort,
        "end_to_end_vs_bare_ort_with_decode": e2e_vs_ort_decode,
        "p95_ms_at_32": p95,
        "radvigil_vs_naive_at_32": vs_naive,
        "targets": {
            "end_to_end_vs_bare_ort": TARGET_E2E_VS_ORT,
            "p95_ms_at_32": TARGET_P95_MS_AT_32,
            "radvigil_vs_naive": TARGET_VS_NAIVE,
        },
    }


def _non_ok(statuses: dict[str, int]) -> str:
    bad = {k: v for k, v in statuses.items() if k != "200"}
    return ", ".join(f"{k}: {v}" for k, v in bad.items()) or "-"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="reuse/keep a trained home here")
    parser.add_argument(
        "--config", type=Path, default=common.FAST_CONFIG, help="training config of the model"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=600, help="timed requests per level")
    parser.add_argument("--seconds", type=float, default=30.0, help="time cap per level")
    parser.add_argument("--images", type=int, default=64, help="distinct JPEGs sent")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny model, 40 requests per level")
    args = parser.parse_args()
    common.quiet_libraries()
    if args.quick:
        args.requests, args.seconds = 40, 10.0
    if NAIVE_CONCURRENCY not in args.concurrency:
        args.concurrency.append(NAIVE_CONCURRENCY)
    common.console.print(common.machine_line())
    result = run(args)
    ratios = report(result)
    common.write_json(
        args.out, "serve_load.json", {"quick": args.quick, **result, "summary": ratios}
    )


if __name__ == "__main__":
    main()
