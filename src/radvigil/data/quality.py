"""Image quality control over a dataset version.

Every item is read once (hash, decode, statistics, perceptual hash); the registered checks of
:mod:`radvigil.data.qc_checks` then run on that table. ``fail`` items are unusable or leak
between splits and are dropped by :func:`exclude_failing`; ``warn`` items are kept but reported
(one copy of an in-split duplicate is harmless to keep, and real radiographs can be dim).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from radvigil.data.duplicates import exact_groups, near_groups, perceptual_hash
from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion
from radvigil.data.qc_checks import CHECKS, QCConfig, QCContext, get_check, pixel_stats
from radvigil.data.qc_result import CheckSummary, DuplicateGroup, QCFlag, QCReport
from radvigil.errors import DataError, InputError

__all__ = [
    "FailOn",
    "QCConfig",
    "duplicate_groups",
    "exclude_failing",
    "measure",
    "qc_offenders",
    "run_qc",
]

Progress = Callable[[Iterable], Iterable]
FailOn = Literal["error", "warning"]


def _no_progress(items: Iterable) -> Iterable:
    return items


def measure(
    version: DatasetVersion, config: QCConfig, progress: Progress = _no_progress
) -> pd.DataFrame:
    """Read every item once: sha256, decode error, size, contrast, clipping, colour, phash."""
    rows = []
    for _, row in progress(list(version.frame.iterrows())):
        rows.append(
            {
                "path": row["path"],
                "split": row["split"],
                "label": row["label"],
                "patient_id": str(row.get("patient_id", "")),
                **_item_stats(version.root / row["path"], row["path"], row["sha256"], config),
            }
        )
    return pd.DataFrame(rows)


def _item_stats(path: Path, name: str, expected_sha: str, config: QCConfig) -> dict[str, object]:
    empty: dict[str, object] = {
        "sha256": "",
        "width": 0,
        "height": 0,
        "std": np.nan,
        "dark_fraction": np.nan,
        "bright_fraction": np.nan,
        "colorfulness": np.nan,
        "phash": "",
    }
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {**empty, "error": f"cannot read file ({exc.strerror})"}
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha and digest != expected_sha:
        return {**empty, "sha256": digest, "error": "bytes differ from the manifest's sha256"}
    try:
        image = read_image(data, name=name)
    except InputError as exc:
        return {**empty, "sha256": digest, "error": exc.message.removeprefix(f"{name}: ")}
    pixels = image.pixels
    return {
        "sha256": digest,
        "error": "",
        **pixel_stats(pixels, image.meta.colorfulness, config),
        "phash": perceptual_hash(pixels),
    }


def duplicate_groups(stats: pd.DataFrame, config: QCConfig) -> list[DuplicateGroup]:
    """Exact groups (same sha256) and near groups with at least two different contents."""
    readable = stats["error"] == ""
    digests = stats["sha256"].where(readable, "").tolist()
    hashes = stats["phash"].where(readable, "").tolist()
    near = [
        members  # a near group is more than copies of one file
        for members in near_groups(hashes, config.near_duplicate_bits)
        if len({digests[i] for i in members}) > 1
    ]

    def group(kind: Literal["exact", "near"], members: list[int]) -> DuplicateGroup:
        rows = stats.iloc[sorted(members)]
        return DuplicateGroup(
            kind=kind,
            paths=rows["path"].tolist(),
            splits=rows["split"].tolist(),
            labels=rows["label"].tolist(),
        )

    return [group("exact", g) for g in exact_groups(digests)] + [group("near", g) for g in near]


def run_qc(
    version: DatasetVersion, config: QCConfig | None = None, progress: Progress = _no_progress
) -> QCReport:
    """Run the configured checks over every item of ``version``."""
    config = config or QCConfig()
    stats = measure(version, config, progress)
    ctx = QCContext(stats, duplicate_groups(stats, config), config)
    flags: list[QCFlag] = []
    summaries: list[CheckSummary] = []
    for name in config.checks or list(CHECKS):
        spec = get_check(name)
        severity = config.severity.get(name, spec.severity)
        found = dict(spec.run(ctx))  # one flag per path and check
        flags += [
            QCFlag(path=p, check=name, severity=severity, message=m) for p, m in found.items()
        ]
        summaries.append(
            CheckSummary(
                check=name, severity=severity, threshold=spec.threshold(config), flagged=len(found)
            )
        )
    return QCReport(
        version_id=version.id,
        items=len(stats),
        config=config.model_dump(),
        checks=summaries,
        groups=ctx.groups,
        flags=flags,
    )


def exclude_failing(version: DatasetVersion, report: QCReport) -> DatasetVersion:
    """A new (unsaved) version without the items that failed, recording what was dropped."""
    if report.version_id != version.id:
        raise DataError(f"QC report is for {report.version_id}, not for {version.id}")
    excluded = report.excluded_by_check()
    keep = ~version.frame["path"].isin(list(excluded))
    if keep.all():
        return version
    frame = version.frame[keep].reset_index(drop=True)
    meta = {
        "source": {"kind": "qc_exclude", "parent_source": version.meta.get("source", {})},
        "derived_from": version.id,
        "qc_exclude": {
            "excluded": [{"path": p, "checks": c} for p, c in excluded.items()],
            "config": report.config,
        },
    }
    return DatasetVersion(frame, version.root, meta)


def qc_offenders(report: QCReport, fail_on: FailOn = "error") -> list[str]:
    """The paths that make a QC run fail: ``error`` counts failing checks, ``warning`` any flag."""
    if fail_on == "error":
        return report.failing_paths()
    return sorted({flag.path for flag in report.flags})
