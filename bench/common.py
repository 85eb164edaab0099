"""Shared pieces of the benchmarks: paths, the machine header, a trained home, tables, JSON.

Nothing here is timed; the scripts time their own work. A *home* is a folder holding the
bundled data imported as a dataset version and an MLflow registry (SQLite) with one model
version under the ``champion`` alias, the same layout ``radvigil`` itself uses.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from radvigil.service.background import BackgroundServer

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "bundled"
SHARED = Path(os.environ.get("RADVIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_OUT = REPO / "bench" / "results"
FAST_CONFIG = REPO / "configs" / "fast.yaml"
MODEL_NAME = "chest-pneumonia"

console = Console(width=160)


def quiet_libraries() -> None:
    """Keep MLflow, Alembic and friends from drowning the tables in log lines and warnings."""
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(level=logging.ERROR)
    for name in ("mlflow", "alembic", "radvigil", "httpx", "uvicorn", "urllib3", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from radvigil.registry import quiet_mlflow

    quiet_mlflow()  # "Successfully registered model" and friends are prints, not log lines


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, load, library versions."""
    import onnxruntime
    import torch

    return {
        "nproc": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "cuda": torch.cuda.is_available(),
    }


def machine_line() -> str:
    m = machine()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"nproc={m['nproc']} (usable {m['affinity_cpus']})  load average {load}  "
        f"torch {m['torch']} ({m['torch_threads']} threads)  onnxruntime {m['onnxruntime']}"
    )


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print one rich table, headed by the current load average and core count."""
    console.print()
    console.print(f"[bold]{title}[/bold]")
    console.print(machine_line())
    t = Table(box=box.SIMPLE_HEAD)
    for i, column in enumerate(columns):
        t.add_column(str(column), justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    console.print(t)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "-"
        magnitude = abs(float(value))
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if magnitude >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def ci_text(estimate: Any) -> str:
    """An evaluation Estimate as 'value (low-high)', or just the value without a CI."""
    if estimate.value is None:
        return "-"
    if estimate.low is None:
        return f"{estimate.value:.3f}"
    return f"{estimate.value:.3f} ({estimate.low:.3f}-{estimate.high:.3f})"


def write_json(out: Path, name: str, payload: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    body = {"machine": machine(), "written": time.strftime("%Y-%m-%dT%H:%M:%S"), **payload}
    path.write_text(json.dumps(body, indent=2, default=_jsonable))
    console.print(f"wrote {path}")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best-of-``repeat`` wall seconds of ``fn()`` and its last result (best-of damps noise)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def bundled_frame(split: str | None = None) -> pd.DataFrame:
    """Rows of the bundled manifest (paths relative to ``data/bundled``)."""
    frame = pd.read_csv(BUNDLED / "manifest.csv")
    return frame if split is None else frame[frame["split"] == split].reset_index(drop=True)


def shared_frame() -> pd.DataFrame | None:
    """Rows of the shared real-data manifest (paths relative to ``SHARED``), or None."""
    path = SHARED / "cxr" / "manifest.csv"
    return pd.read_csv(path) if path.is_file() else None


def read_pixels(paths: Sequence[Path]) -> list[np.ndarray]:
    """Decode real images with radvigil's own reader (uint8 grayscale, original size)."""
    from radvigil.data.io import read_image

    return [read_image(p).pixels for p in paths]


def site_version():
    """The bundled stream's test-folder studies (the site's other acquisition batch) as a
    one-split dataset version, for judging models on the real shift."""
    from radvigil.data.importers import from_csv
    from radvigil.data.manifest import DatasetVersion

    stream = from_csv(BUNDLED / "stream.csv").version
    frame = stream.frame.query("acquisition_batch == 'test-folder'").assign(split="test")
    return DatasetVersion(frame.reset_index(drop=True), stream.root)


@dataclass
class Home:
    """A radvigil home: its folder, dataset catalog, registry and the served model version."""

    root: Path
    catalog: Any
    registry: Any
    data_version: str
    trained_seconds: float | None = None

    def load(self):
        """The champion as a :class:`radvigil.registry.LoadedModel` (downloaded once)."""
        return self.registry.load(f"{MODEL_NAME}@champion")


def open_home(root: Path) -> Home:
    """Import the bundled data into ``root`` (idempotent) and open its registry."""
    from radvigil.data.catalog import DatasetCatalog
    from radvigil.data.importers import from_csv
    from radvigil.registry import Registry

    root.mkdir(parents=True, exist_ok=True)
    catalog = DatasetCatalog(root / "datasets")
    vid = catalog.save(from_csv(BUNDLED / "manifest.csv").version)
    registry = Registry(
        f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts", root / "model-cache"
    )
    return Home(root, catalog, registry, vid)


def has_champion(home: Home) -> bool:
    from radvigil.errors import RadvigilError

    try:
        home.registry.resolve(f"{MODEL_NAME}@champion")
        return True
    except RadvigilError:
        return False


def trained_home(root: Path, config: Path = FAST_CONFIG, **overrides: Any) -> Home:
    """A home at ``root`` whose champion is a model trained with ``config`` (reused if present)."""
    from radvigil.loop.training import run_training
    from radvigil.model.config import load_config

    home = open_home(root)
    if has_champion(home):
        console.print(f"reusing the champion in {root}")
        return home
    cfg = load_config(config).model_copy(update=overrides)
    console.print(f"training {config.name} ({cfg.backbone}, {cfg.input_size}px) into {root} ...")
    start = time.perf_counter()
    outcome = run_training(cfg, home.data_version, home.catalog, home.registry)
    home.trained_seconds = time.perf_counter() - start
    home.registry.set_alias(outcome.name, "champion", outcome.version, "bench", "benchmark model")
    console.print(f"trained in {home.trained_seconds:.0f} s, val metrics {_short(outcome)}")
    return home


def _short(outcome: Any) -> str:
    m = outcome.card.metrics
    keys = ("val_accuracy", "val_macro_f1", "val_finding_sensitivity")
    return ", ".join(f"{k}={m[k]:.3f}" for k in keys if k in m)


@contextmanager
def bench_home(
    path: Path | None, config: Path = FAST_CONFIG, quick: bool = False, **overrides: Any
):
    """The ``--home`` folder if given (kept), else a temporary one (removed afterwards).

    ``quick`` trains one epoch on 128 images (a working model for smoke runs, not a good one).
    """
    if quick:
        overrides = {"epochs": 1, "max_train_images": 128, **overrides}
    if path is not None:
        yield trained_home(path.expanduser().resolve(), config, **overrides)
        return
    tmp = Path(tempfile.mkdtemp(prefix="radvigil-bench-"))
    try:
        yield trained_home(tmp, config, **overrides)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def LiveServer(app: Any) -> BackgroundServer:
    """The shared background uvicorn server, quiet for benchmark output."""
    return BackgroundServer(app, log_level="error")
