"""Unit-test fixtures for the data layer: the bundled version and real pixels to derive from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radvigil.data.importers import from_csv
from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion

BUNDLED_JPEG = "kermany/test/normal/IM-0001-0001.jpg"


@pytest.fixture(scope="session")
def bundled_version(bundled: Path) -> DatasetVersion:
    """The bundled Kermany subset as a (not saved) dataset version."""
    return from_csv(bundled / "manifest.csv").version


@pytest.fixture(scope="session")
def xray(bundled: Path) -> np.ndarray:
    """One real 224x224 chest X-ray as uint8 pixels."""
    return read_image(bundled / BUNDLED_JPEG).pixels


@pytest.fixture(scope="session")
def xrays(bundled_version: DatasetVersion) -> list[tuple[str, np.ndarray]]:
    """Twelve real X-rays (label, pixels), six per class, for building test folders."""
    frame = bundled_version.frame
    picked = [frame[frame["label"] == label].head(6) for label in ("normal", "pneumonia")]
    return [
        (row.label, read_image(bundled_version.root / row.path).pixels)
        for part in picked
        for row in part.itertuples()
    ]
