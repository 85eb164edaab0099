"""``radvigil demo``: the whole closed loop on the bundled real data, end to end.

Train a champion, serve it, stream real held-back studies, inject a scanner change, watch the
monitors raise an alert, label the drifters (from ground truth, standing in for clinicians),
fire the trigger, retrain, gate, shadow, promote, and show the drift-era cases before/after.
"""

from __future__ import annotations

import io
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import typer
from PIL import Image as PILImage
from rich.panel import Panel

from radvigil.cli.common import CONFIGS, console, track
from radvigil.cli.data import print_qc_report
from radvigil.config import Settings, get_settings, reset_settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv
from radvigil.data.quality import run_qc
from radvigil.errors import ConfigError
from radvigil.evaluation import load_criteria
from radvigil.loop.evaluation import gate_version, verdict_tag
from radvigil.loop.training import run_training
from radvigil.model.config import load_config
from radvigil.registry import Registry

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "data" / "bundled"
DEMO_GATES = CONFIGS / "gates-demo.yaml"
SCANNER_CHANGE = ("brightness:factor=1.25", "contrast:factor=0.75", "gaussian_noise:sigma=6")
DEMO_MONITORING = """# written by radvigil demo: windows of 50 fit the bundled stream
windows: {size: 50, min_size: 25}
"""
DEMO_TRIGGERS = "labelled_drifters: 40\ndrift: {detector: image_stats, consecutive: 2}\n"


@dataclass
class Step:
    name: str
    seconds: float
    outcome: str


@dataclass
class Demo:
    settings: Settings
    steps: list[Step] = field(default_factory=list)

    def step(self, name: str, fn: Callable[[], str]) -> str:
        console.rule(f"[bold cyan]{name}")
        started = time.perf_counter()
        outcome = fn()
        self.steps.append(Step(name, time.perf_counter() - started, outcome))
        console.print(f"[green]✓[/green] {outcome}  ({time.perf_counter() - started:.1f} s)")
        return outcome


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _stream_frame() -> pd.DataFrame:
    frame = pd.read_csv(BUNDLE / "stream.csv", dtype=str, keep_default_na=False)
    return frame.sample(frac=1.0, random_state=7).reset_index(drop=True)


def _post_all(
    client: httpx.Client, token: str, payloads: list[tuple[str, bytes]], what: str
) -> list[dict]:
    """Send studies with 4 concurrent clients, like a busy reading room."""

    def send(item: tuple[str, bytes]) -> dict:
        name, data = item
        response = client.post(
            "/v1/predict",
            headers={"X-API-Key": token},
            files={"file": (name, data, "image/png")},
            data={"metadata": '{"site": "guangzhou-ward"}'},
        )
        response.raise_for_status()
        return response.json()

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(track(pool.map(send, payloads), what))


def demo_command(
    fresh: bool = typer.Option(False, "--fresh", help="Delete the radvigil home first."),
    config: Path = typer.Option(CONFIGS / "fast.yaml", help="Training config for both models."),
) -> None:
    """Run the closed-loop demo on the bundled data (about 5-10 minutes on 2 CPU cores)."""
    from radvigil.service.app import create_app
    from radvigil.store import KeyStore

    settings = get_settings()
    home = settings.home_dir
    if home.exists() and any(home.iterdir()):
        if not fresh:
            raise ConfigError(
                f"{home} is not empty; pass --fresh to reset it for the demo "
                "(or set RADVIGIL_HOME to another folder)"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / "monitoring.yaml").write_text(DEMO_MONITORING)
    (home / "triggers.yaml").write_text(DEMO_TRIGGERS)
    settings = settings.model_copy(
        update={
            "store_review_images": True,
            "monitoring_config": home / "monitoring.yaml",
            "monitor_interval_seconds": 0,
            "model_poll_seconds": 2.0,
        }
    )
    demo = Demo(settings)
    logging.getLogger("radvigil").setLevel(logging.ERROR)  # the demo prints what matters itself
    console.print(
        Panel.fit(
            "radvigil closed-loop demo on real paediatric chest X-rays (Kermany, CC BY 4.0).\n"
            "Outputs are decision support. Clinician labels are simulated from ground truth.\n"
            "Gates: configs/gates-demo.yaml (ECE <= 0.15 and wider non-inferiority margins than\n"
            "configs/gates.yaml, because the demo's hold-out has only 126 pneumonia cases).",
            title="radvigil demo",
        )
    )
    catalog = DatasetCatalog(settings.datasets_dir)
    registry = Registry(
        settings.resolved_tracking_uri, settings.artifacts_dir, home / "model-cache"
    )
    state: dict = {}

    def import_data() -> str:
        result = from_csv(BUNDLE / "manifest.csv", progress=lambda x: track(x, "importing"))
        state["data"] = catalog.save(result.version, name="bundled-kermany")
        report = run_qc(catalog.load(state["data"]), progress=lambda x: track(x, "QC"))
        print_qc_report(report)
        return f"dataset version {state['data']} ({len(result.version.frame)} images)"

    demo.step("1. Import and validate the bundled data", import_data)
    cfg = load_config(config)

    def train_champion() -> str:
        outcome = run_training(
            cfg, state["data"], catalog, registry, progress=lambda x: track(x, "loading")
        )
        criteria = load_criteria(DEMO_GATES)
        loaded = registry.load(f"{outcome.name}/{outcome.version}")
        verdict = gate_version(criteria, loaded, None, catalog.load(state["data"]), "test")
        registry.set_version_tag(
            outcome.name, outcome.version, "radvigil.gate", verdict_tag(verdict)
        )
        registry.set_alias(
            outcome.name,
            "champion",
            outcome.version,
            "demo",
            "first model: nothing to compare with",
        )
        state["name"], state["v1"], state["gate1"] = outcome.name, outcome.version, verdict
        return (
            f"{outcome.name}/{outcome.version} registered as champion; gates: {verdict.summary()}"
        )

    demo.step("2. Train, calibrate, export and register the champion", train_champion)
    reset_settings()
    app = create_app(settings, registry=registry)
    keys = KeyStore(app.state.radvigil.db)
    tokens = {
        role: keys.create(f"demo-{role}", role, rate_limit=100_000)[0]
        for role in ("admin", "clinician", "service")
    }
    from radvigil.cli.demo_loop import run_loop

    run_loop(demo, app, tokens, state, registry, catalog, _stream_frame(), cfg)
