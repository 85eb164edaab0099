"""Importing CSV manifests and ImageFolder trees of real images, bad files included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from radvigil.data.importers import from_csv, from_folder
from radvigil.errors import DataError


def test_folder_import_keeps_good_files_and_lists_bad_ones(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    for index, (label, pixels) in enumerate(xrays):
        split = "test" if index % 3 == 0 else "train"
        target = tmp_path / split / label / f"img{index}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(pixels).save(target)
    good = (tmp_path / "train" / "normal" / "img1.png").read_bytes()
    (tmp_path / "train" / "normal" / "empty.png").write_bytes(b"")
    (tmp_path / "train" / "normal" / "cut.png").write_bytes(good[: len(good) // 3])
    (tmp_path / "test" / "pneumonia" / "noise.png").write_bytes(b"\x13" * 777)
    (tmp_path / "notes.txt").write_text("ignored")

    result = from_folder(tmp_path)

    assert len(result.version.frame) == len(xrays)
    rejected = dict(result.rejected)
    assert set(rejected) == {
        "train/normal/empty.png",
        "train/normal/cut.png",
        "test/pneumonia/noise.png",
    }
    assert "empty" in rejected["train/normal/empty.png"]
    assert "truncated" in rejected["train/normal/cut.png"]
    assert "not a PNG, JPEG or DICOM" in rejected["test/pneumonia/noise.png"]
    counts = result.version.frame.groupby("split").size().to_dict()
    assert counts == {"test": 4, "train": 8}
    assert (result.version.frame["width"].astype(int) == 224).all()


def test_folder_without_split_folders_is_split_by_seed(
    tmp_path: Path, xrays: list[tuple[str, np.ndarray]]
) -> None:
    for index, (label, pixels) in enumerate(xrays * 2):
        target = tmp_path / label / f"img{index:02d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(pixels).save(target)
    first = from_folder(tmp_path, seed=1).version
    assert set(first.frame["split"]) <= {"train", "val", "test"}
    assert from_folder(tmp_path, seed=1).version.id == first.id


def test_where_filters_csv_rows(bundled: Path) -> None:
    manifest = bundled / "manifest.csv"
    test_normal = from_csv(manifest, where={"split": "test", "label": "normal"}).version
    assert len(test_normal.frame) == 125
    assert set(test_normal.frame["split"]) == {"test"}
    both = from_csv(manifest, where={"split": "val,test"}).version
    assert set(both.frame["split"]) == {"val", "test"}
    rows = pd.read_csv(manifest)
    assert len(both.frame) == rows["split"].isin(["val", "test"]).sum()
    with pytest.raises(DataError, match=r"cannot filter on 'scanner'; columns: \['path'"):
        from_csv(manifest, where={"scanner": "x"})
    with pytest.raises(DataError, match="no rows left"):
        from_csv(manifest, where={"view_position": "PA"})


def test_missing_files_are_rejected_not_fatal(bundled: Path, tmp_path: Path) -> None:
    lines = (bundled / "manifest.csv").read_text().splitlines()
    header, first, second = lines[0], lines[1], lines[2]
    name = second.split(",")[0].rsplit("/", 1)[1]
    ghost = second.replace(name, "IM-9999-0001.jpg")
    assert ghost != second
    csv = tmp_path / "m.csv"
    csv.write_text("\n".join([header, first, ghost]) + "\n")
    result = from_csv(csv, root=bundled)
    assert len(result.version.frame) == 1
    assert result.rejected[0][0].endswith("IM-9999-0001.jpg")
    assert "cannot read file" in result.rejected[0][1]
