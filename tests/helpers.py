"""Small builders tests share: a tiny training config and a home with the bundled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv
from radvigil.model.config import TrainConfig
from radvigil.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> TrainConfig:
    """A few-second training run on a capped slice of the bundled data (CPU)."""
    values = dict(
        task="chest-pneumonia",
        backbone="resnet10t",
        input_size=64,
        epochs=2,
        batch_size=32,
        lr=0.003,
        warmup_epochs=1,
        patience=2,
        seed=7,
        max_train_images=160,
    )
    values.update(overrides)
    return TrainConfig(**values)


@dataclass
class Home:
    """A radvigil home built without environment variables (usable from session fixtures)."""

    root: Path
    catalog: DatasetCatalog
    registry: Registry
    data_version: str


def make_home(root: Path, tracking_uri: str | None = None) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    catalog = DatasetCatalog(root / "datasets")
    result = from_csv(REPO / "data" / "bundled" / "manifest.csv")
    vid = catalog.save(result.version)
    registry = Registry(
        tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
        root / "mlartifacts",
        root / "model-cache",
    )
    return Home(root, catalog, registry, vid)


class LiveServer:
    """A real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
