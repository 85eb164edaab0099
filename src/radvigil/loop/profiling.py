"""Build a model version's reference profile from its validation data (what it was checked on)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion
from radvigil.monitoring import Monitor, ReferenceProfile
from radvigil.monitoring.config import MonitorConfig
from radvigil.monitoring.features import image_stats_frame

log = logging.getLogger(__name__)
METADATA_COLUMNS = ("site", "view_position")
WINDOW_SIZES = (25, 50, 100, 200)


def calibration_sizes(n_reference: int, sizes: Sequence[int] = WINDOW_SIZES) -> list[int]:
    """Window sizes the reference can calibrate honestly (at least twice the window, counted in
    patients where the reference knows them); larger
    windows use the largest of these (conservative), smaller ones the detectors' own tests."""
    return sorted({s for s in sizes if 2 * s <= n_reference}) or [max(10, n_reference // 2)]


def build_profile(
    version: DatasetVersion,
    val_frame: pd.DataFrame,
    targets: np.ndarray,
    probs: np.ndarray,
    embeddings: np.ndarray,
    classes: list[str],
    out_dir: Path,
    info: dict[str, str],
    config: MonitorConfig | None = None,
) -> ReferenceProfile:
    """Profile + calibrated detector thresholds, written to ``out_dir``."""
    images = [read_image(version.root / p) for p in val_frame["path"]]
    stats = image_stats_frame(images)
    meta = val_frame[[c for c in METADATA_COLUMNS if c in val_frame.columns]].reset_index(drop=True)
    config = config or MonitorConfig()
    groups = patient_groups(val_frame)
    profile = ReferenceProfile.build(
        embeddings.astype(np.float32),
        probs,
        targets,
        stats,
        meta,
        class_names=classes,
        n_components=min(config.profile.n_components, embeddings.shape[1], len(targets) - 1),
        max_reference=config.profile.max_reference,
        ood_quantile=config.profile.ood_quantile,
        info=info,
        groups=groups,
    )
    wanted = [*config.calibration.window_sizes, config.windows.size]
    units = len(targets) if groups is None else len(np.unique(groups))
    profile = Monitor(profile, config).calibrate(calibration_sizes(units, wanted))
    profile.to_path(out_dir)
    return profile


def patient_groups(frame: pd.DataFrame) -> np.ndarray | None:
    """Integer codes of the rows sharing a ``patient_id`` (a row without one is its own patient);
    None when the frame has no such column. Only the codes reach the profile, never the ids."""
    if "patient_id" not in frame.columns:
        return None
    codes, _ = pd.factorize(frame["patient_id"].reset_index(drop=True))
    missing = codes < 0
    codes[missing] = codes.max(initial=-1) + 1 + np.arange(int(missing.sum()))
    return codes
