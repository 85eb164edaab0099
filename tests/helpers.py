"""Small builders tests share: a tiny training config, a home with the bundled data and an
MLflow SQLite store whose schema is already there."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
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
    "mlflow_store",
    "small_card",
    "tiny_config",
]


@cache
def _migrated_mlflow_db() -> Path:
    """An empty MLflow SQLite store, made once per test process.

    A new store runs MLflow's whole chain of Alembic migrations (18 s measured on the shared
    2-core machine under load, against 0.2 s to open a copy), and the suite makes dozens.
    """
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="radvigil-mlflow-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the schema
    return path


def mlflow_store(path: Path) -> str:
    """A fresh, empty MLflow SQLite store at ``path`` (a copy of a migrated one); its URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_mlflow_db(), path)
    return f"sqlite:///{path}"


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
        tracking_uri or mlflow_store(root / "mlflow.db"),
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
