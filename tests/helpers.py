"""Small builders tests share: a tiny training config and a home with the bundled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv
from radvigil.model.byom.record import ImportRecord
from radvigil.model.card import InputSpec, ModelCard
from radvigil.model.config import TrainConfig
from radvigil.registry import Registry
from radvigil.service.background import BackgroundServer as LiveServer
from radvigil.task import load_task

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
__all__ = [
    "REPO",
    "Home",
    "LiveServer",
    "make_home",
    "mlflow_client",
    "small_card",
    "tiny_config",
]


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


def small_card(*, imported: bool = False, **overrides) -> ModelCard:
    """A valid model card for a version no test trained (``imported``: with import lineage)."""
    values = dict(
        name="chest-pneumonia",
        task=load_task("chest-pneumonia"),
        backbone="resnet10t",
        input=InputSpec(size=64, mean=0.5, std=0.25),
        temperature=1.0,
        thresholds={"pneumonia": 0.5},
        training_data_version="ds-test",
        code_commit="unknown",
        config=tiny_config().model_dump(mode="json"),
        embedding_dim=64,
    )
    if imported:
        values["imported"] = ImportRecord(
            file_name="vendor.onnx",
            file_sha256="0" * 64,
            file_bytes=1,
            source="a test",
            licence="test only",
            intended_use="tests",
            importer="tester",
            imported_at="2026-01-01T00:00:00+00:00",
            validation_data_version="ds-test",
            spec={},
            thresholds_from="fitted on validation",
            embedding_from="a test",
        )
    values.update(overrides)
    return ModelCard(**values)


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
