"""Fixtures shared by all tests: real data locations and an isolated radvigil home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from radvigil.config import Settings, get_settings, reset_settings

# Tests written before registry trust set MLflow aliases directly; they run with trust off.
# The registry-trust tests ask for RADVIGIL_REGISTRY_TRUST=enforce (the product default).
os.environ.setdefault("RADVIGIL_REGISTRY_TRUST", "off")
# The CLI tests read Rich tables, which wrap to the terminal's width: fix it, so a run without a
# terminal (an xdist worker, a CI log) renders the same cells as a wide one.
os.environ.setdefault("COLUMNS", "200")

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "bundled"


def _shared_data() -> Path:
    return Path(os.environ.get("RADVIGIL_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def bundled() -> Path:
    """The real Kermany subset and DICOM files shipped in the repo."""
    return BUNDLED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full real data set beside the repo (``../shared/data`` or RADVIGIL_SHARED_DATA)."""
    path = _shared_data()
    if not (path / "cxr" / "manifest.csv").exists():
        pytest.fail(f"shared data not found at {path}; set RADVIGIL_SHARED_DATA")
    return path


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A fresh radvigil home in a temp folder, with settings re-read from the environment."""
    monkeypatch.setenv("RADVIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RADVIGIL_DATABASE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_settings()
    settings = get_settings()
    settings.ensure_home()
    yield settings
    reset_settings()


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory):
    """A home with the bundled data imported and one tiny model registered as champion.

    Shared by the tests that need a real registered model (training takes a few seconds).
    """
    from radvigil.loop.training import run_training
    from tests.helpers import make_home, tiny_config

    home = make_home(tmp_path_factory.mktemp("trained-home"))
    outcome = run_training(tiny_config(), home.data_version, home.catalog, home.registry)
    home.registry.set_alias(outcome.name, "champion", outcome.version, "test", "fixture")
    return home, outcome


# Property tests explore the same examples on every run (no flaky CI), with no per-example
# deadline (timings on 2 shared cores vary too much to mean anything).
hypothesis_settings.register_profile("radvigil", derandomize=True, deadline=None)
hypothesis_settings.load_profile("radvigil")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest tests first (a module says ``RUN_FIRST = True``): under ``-n 2`` the
    other worker then runs everything else meanwhile, instead of the demo scenario starting
    half-way through and finishing alone."""
    items.sort(key=lambda item: not getattr(item.module, "RUN_FIRST", False))
