"""Build dataset versions from a CSV manifest, an ImageFolder tree or a DICOM folder.

Every file is hashed and decoded once at import, so a version only ever holds readable images;
the ones that fail are returned with the reason, and the import completes for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radvigil.data.image import age_band
from radvigil.data.io import read_image
from radvigil.data.manifest import SPLITS, DatasetVersion, assign_splits, canonical, file_sha256
from radvigil.errors import DataError, InputError

IGNORED_SUFFIXES = frozenset({".csv", ".txt", ".md", ".json", ".parquet", ".yaml", ".yml"})
Progress = Callable[[Iterable], Iterable]


@dataclass
class ImportResult:
    """The new version and the files that could not be imported, with why."""

    version: DatasetVersion
    rejected: list[tuple[str, str]] = field(default_factory=list)


def _no_progress(items: Iterable) -> Iterable:
    return items


def from_csv(
    csv_path: Path,
    *,
    root: Path | None = None,
    where: dict[str, str] | None = None,
    seed: int = 42,
    max_pixels: int = 50_000_000,
    progress: Progress = _no_progress,
) -> ImportResult:
    """Import a CSV manifest (``path,label[,split,patient_id,site,view_position,...]``)."""
    if not csv_path.is_file():
        raise DataError(f"manifest {csv_path} does not exist")
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{csv_path}: not a readable CSV manifest ({exc})") from exc
    if "path" not in frame.columns and "file" in frame.columns:
        frame = frame.rename(columns={"file": "path"})
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"{csv_path}: manifest lacks column(s) {missing}")
    frame = _filter(frame, where or {}, csv_path)
    root = (root or _guess_root(csv_path, frame["path"].iloc[0])).resolve()
    source = {"kind": "csv", "manifest": csv_path.name, "where": where or {}}
    return _scan(frame, root, source, seed, max_pixels, progress)


def from_folder(
    folder: Path,
    *,
    seed: int = 42,
    max_pixels: int = 50_000_000,
    progress: Progress = _no_progress,
) -> ImportResult:
    """Import ``folder/[split/]label/file``: split folders are kept when present."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    rows = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder)
        if file.name.startswith(".") or file.suffix.lower() in IGNORED_SUFFIXES:
            continue
        parts = rel.parts
        if len(parts) == 3 and parts[0] in SPLITS:
            rows.append({"path": rel.as_posix(), "split": parts[0], "label": parts[1]})
        elif len(parts) == 2:
            rows.append({"path": rel.as_posix(), "label": parts[0]})
    if not rows:
        raise DataError(
            f"{folder}: no images found; expected label subfolders, optionally inside "
            f"{'/'.join(SPLITS)} folders"
        )
    frame = pd.DataFrame(rows)
    return _scan(frame, folder.resolve(), {"kind": "folder"}, seed, max_pixels, progress)


def _guess_root(csv_path: Path, first: str) -> Path:
    """The manifest's folder or the nearest parent in which its first path exists."""
    for folder in [csv_path.parent, *csv_path.parent.parents][:4]:
        if (folder / first).exists():
            return folder
    return csv_path.parent


def _filter(frame: pd.DataFrame, where: dict[str, str], origin: Path) -> pd.DataFrame:
    for column, value in where.items():
        if column not in frame.columns:
            raise DataError(
                f"{origin}: cannot filter on {column!r}; columns: {list(frame.columns)}"
            )
        frame = frame[frame[column].isin(value.split(","))]
    if frame.empty:
        raise DataError(f"{origin}: no rows left after filtering on {where}")
    return frame.reset_index(drop=True)


def _scan(
    frame: pd.DataFrame,
    root: Path,
    source: dict,
    seed: int,
    max_pixels: int,
    progress: Progress,
) -> ImportResult:
    """Hash and decode every file; keep good rows enriched with image metadata."""
    frame = frame.copy()
    for column in ("split", "patient_id", "view_position", "patient_sex", "site", "sha256"):
        if column not in frame.columns:
            frame[column] = ""
    if "source_dataset" in frame.columns:
        frame["site"] = frame["site"].where(frame["site"] != "", frame["source_dataset"])
    rejected: list[tuple[str, str]] = []
    keep: list[int] = []
    extra: dict[str, list] = {
        k: []
        for k in (
            "width",
            "height",
            "bit_depth",
            "modality",
            "manufacturer",
            "body_part",
            "age_band",
        )
    }
    for index, row in progress(list(frame.iterrows())):
        path = root / row["path"]
        try:
            digest = file_sha256(path)
        except OSError as exc:
            rejected.append((row["path"], f"cannot read file ({exc.strerror})"))
            continue
        if row["sha256"] and row["sha256"] != digest:
            rejected.append((row["path"], "content differs from the manifest's sha256"))
            continue
        try:
            image = read_image(path, name=row["path"], max_pixels=max_pixels)
        except InputError as exc:
            rejected.append((row["path"], exc.message.removeprefix(f"{row['path']}: ")))
            continue
        meta = image.meta
        frame.at[index, "sha256"] = digest
        if not row["view_position"] and meta.view_position:
            frame.at[index, "view_position"] = meta.view_position
        if not row["patient_sex"] and meta.sex:
            frame.at[index, "patient_sex"] = meta.sex
        extra["width"].append(meta.width)
        extra["height"].append(meta.height)
        extra["bit_depth"].append(meta.bit_depth)
        extra["modality"].append(meta.modality or "")
        extra["manufacturer"].append(meta.manufacturer or "")
        extra["body_part"].append(meta.body_part or "")
        extra["age_band"].append(meta.age_band or age_band(row.get("patient_age")) or "")
        keep.append(index)
    if not keep:
        raise DataError(f"none of the {len(frame)} files could be imported: {rejected[:3]}")
    good = frame.loc[keep].reset_index(drop=True)
    for column, values in extra.items():
        if column not in good.columns or (good[column].astype(str) == "").all():
            good[column] = values
    if (good["split"] == "").any():
        given = good["split"] != ""
        good.loc[~given, "split"] = assign_splits(good[~given], seed)
        source = {**source, "split_seed": seed}
    bad_splits = sorted(set(good["split"]) - set(SPLITS))
    if bad_splits:
        raise DataError(f"unknown split name(s) {bad_splits}; use {list(SPLITS)}")
    version = DatasetVersion(canonical(good), root, {"source": source})
    return ImportResult(version, rejected)
