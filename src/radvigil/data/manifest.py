"""Dataset versions: a manifest of items whose id is the hash of the manifest itself.

A version is a table with one row per image (relative ``path``, ``label``, ``split``,
``sha256`` of the file, optional ``patient_id``/``site``/``view_position``/... metadata) plus
a ``root`` folder the paths are relative to. The id hashes only the table, never the root, so
the same inputs give the same id on any machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from radvigil.errors import DataError

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("path", "label", "split", "sha256")
# Columns that could identify a patient are never stored; patient_id must already be a pseudonym.
PHI_COLUMNS = frozenset(
    {
        "patient_name",
        "patientname",
        "name",
        "birth_date",
        "patientbirthdate",
        "accession_number",
        "mrn",
        "address",
        "phone",
    }
)


@dataclass
class DatasetVersion:
    """One immutable dataset version: manifest rows, the folder they live in, and provenance."""

    frame: pd.DataFrame
    root: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return version_id(self.frame)

    def paths(self) -> list[Path]:
        return [self.root / p for p in self.frame["path"]]

    def split(self, name: str) -> DatasetVersion:
        """The rows of one split, as a derived (unsaved) version sharing root and meta."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; splits are {list(SPLITS)}")
        rows = self.frame[self.frame["split"] == name].reset_index(drop=True)
        if rows.empty:
            raise DataError(f"dataset {self.id} has no images in split {name!r}")
        return DatasetVersion(rows, self.root, {**self.meta, "split": name})

    def counts(self, by: list[str]) -> pd.DataFrame:
        missing = [c for c in by if c not in self.frame.columns]
        if missing:
            raise DataError(
                f"dataset {self.id} has no column(s) {missing}; columns: {list(self.frame.columns)}"
            )
        return self.frame.fillna({c: "-" for c in by}).groupby(by).size().rename("images")


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted rows and columns, strings everywhere: the form that is hashed and stored."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"manifest lacks required column(s) {missing}")
    out = frame.copy()
    out = out.drop(columns=[c for c in out.columns if c.lower() in PHI_COLUMNS])
    out = out.astype(str).replace({"nan": "", "None": "", "<NA>": ""})
    first = list(REQUIRED_COLUMNS)
    rest = sorted(c for c in out.columns if c not in first)
    return out[first + rest].sort_values("path", kind="stable").reset_index(drop=True)


def version_id(frame: pd.DataFrame) -> str:
    """``ds-`` + the first 12 hex digits of the sha256 of the canonical manifest CSV."""
    data = canonical(frame).to_csv(index=False, lineterminator="\n").encode()
    return "ds-" + hashlib.sha256(data).hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def assign_splits(
    frame: pd.DataFrame, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> pd.Series:
    """Seeded splits for rows without one: stratified by label, grouped by patient when known."""
    n_folds = max(2, round(1 / min(val_fraction, test_fraction)))
    groups = frame.get("patient_id", pd.Series([""] * len(frame), index=frame.index))
    groups = groups.fillna("").astype(str)
    groups = groups.where(groups != "", "item:" + frame["path"].astype(str))
    labels = frame["label"].astype(str).to_numpy()
    folds = np.zeros(len(frame), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    try:
        for fold, (_, held) in enumerate(splitter.split(np.zeros(len(frame)), labels, groups)):
            folds[held] = fold
    except ValueError as exc:
        raise DataError(f"cannot split {len(frame)} items into {n_folds} folds: {exc}") from exc
    n_test = max(1, round(test_fraction * n_folds))
    n_val = max(1, round(val_fraction * n_folds))
    return pd.Series(
        np.where(folds < n_test, "test", np.where(folds < n_test + n_val, "val", "train")),
        index=frame.index,
    )


def leakage_groups(frame: pd.DataFrame, column: str = "patient_id") -> list[str]:
    """Patients (or other groups) whose items appear in more than one split."""
    if column not in frame.columns:
        return []
    known = frame[frame[column].astype(str) != ""]
    spread = known.groupby(column)["split"].nunique()
    return sorted(spread[spread > 1].index.astype(str))


def to_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=2, sort_keys=True, default=str)
