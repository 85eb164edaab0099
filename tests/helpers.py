"""Small builders tests share: a tiny training config and a home with the bundled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv
from radvigil.model.config import TrainConfig
from radvigil.registry import Registry
from radvigil.service.background import BackgroundServer as LiveServer

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
__all__ = ["REPO", "Home", "LiveServer", "make_home", "mlflow_client", "tiny_config"]


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


def mlflow_client(registry: Registry) -> MlflowClient:
    """A plain MLflow client on the registry's store, for a test that plays someone working in
    MLflow directly (seeding versions without artifacts, moving an alias behind radvigil's back).
    """
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
