"""Dataset versions: content-addressed ids, seeded patient-grouped splits, the catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from radvigil.config import Settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.data.importers import from_csv
from radvigil.data.manifest import DatasetVersion, assign_splits, leakage_groups, version_id
from radvigil.errors import NotFoundError


def test_importing_the_bundled_manifest_twice_gives_the_same_id(
    bundled: Path, bundled_version: DatasetVersion
) -> None:
    again = from_csv(bundled / "manifest.csv").version
    assert again.id == bundled_version.id
    assert again.id.startswith("ds-") and len(again.id) == 15
    shuffled = bundled_version.frame.sample(frac=1, random_state=1)
    assert version_id(shuffled[list(reversed(shuffled.columns))]) == bundled_version.id


def test_changing_one_label_changes_the_id(bundled_version: DatasetVersion) -> None:
    frame = bundled_version.frame.copy()
    frame.loc[0, "label"] = "pneumonia" if frame.loc[0, "label"] == "normal" else "normal"
    assert version_id(frame) != bundled_version.id


def test_seeded_splits_are_stratified_and_patient_grouped(
    bundled_version: DatasetVersion,
) -> None:
    frame = bundled_version.frame.drop(columns=["split"])
    splits = assign_splits(frame, seed=7)
    assert splits.equals(assign_splits(frame, seed=7))
    assert not splits.equals(assign_splits(frame, seed=8))
    placed = frame.assign(split=splits)
    assert leakage_groups(placed) == []
    assert placed.groupby("patient_id")["split"].nunique().max() == 1
    shares = placed.groupby("split")["label"].value_counts(normalize=True).unstack()
    overall = placed["label"].value_counts(normalize=True)
    assert (shares - overall).abs().max().max() < 0.05
    sizes = placed["split"].value_counts(normalize=True)
    assert sizes["train"] == pytest.approx(0.8, abs=0.05)
    assert sizes["val"] == pytest.approx(0.1, abs=0.05)


def test_csv_without_splits_gets_seeded_grouped_splits(
    bundled: Path, bundled_version: DatasetVersion, tmp_path: Path
) -> None:
    rows = bundled_version.frame[["path", "label", "patient_id"]]
    csv = tmp_path / "labels.csv"
    rows.to_csv(csv, index=False)
    version = from_csv(csv, root=bundled, seed=3).version
    assert version.meta["source"]["split_seed"] == 3
    assert set(version.frame["split"]) == {"train", "val", "test"}
    assert leakage_groups(version.frame) == []


def test_leakage_groups_finds_a_patient_in_two_splits() -> None:
    frame = pd.DataFrame(
        {
            "patient_id": ["p1", "p1", "p2", ""],
            "split": ["train", "test", "train", "test"],
        }
    )
    assert leakage_groups(frame) == ["p1"]


def test_catalog_resolves_ids_prefixes_names_and_latest(
    home: Settings, bundled_version: DatasetVersion
) -> None:
    catalog = DatasetCatalog(home.datasets_dir)
    bundled_version = DatasetVersion(bundled_version.frame, bundled_version.root)  # save mutates
    with pytest.raises(NotFoundError, match="no dataset versions yet"):
        catalog.resolve("latest")
    full = catalog.save(bundled_version, name="bundled")
    test_only = catalog.save(bundled_version.split("test"))
    assert catalog.resolve(full) == full
    assert catalog.resolve(full[:8]) == full
    assert catalog.resolve("bundled") == full
    assert catalog.resolve("latest") == test_only
    loaded = catalog.load("bundled")
    assert loaded.id == full
    assert loaded.root == bundled_version.root
    assert len(catalog.load(test_only).frame) == 253
    with pytest.raises(NotFoundError, match="ambiguous"):
        catalog.resolve("ds-")
    with pytest.raises(NotFoundError, match="no dataset version 'nope'"):
        catalog.resolve("nope")
