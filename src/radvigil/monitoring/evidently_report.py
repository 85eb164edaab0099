"""Evidently 0.7 adapters: an HTML data-drift report of a window, and Evidently's embedding verdict.

The report covers the tabular features (image statistics, metadata, output confidence) of a
window against the profile's reference with ``DataDriftPreset`` (Evidently's per-column default
tests). :func:`evidently_embedding_drift` reproduces the verdict of Evidently's
``EmbeddingsDrift`` metric with its default method (a classifier with a bootstrap threshold for
references under 1000 rows), without the t-SNE plot the metric also computes, as a baseline for
benchmarks. Telemetry is switched off (``DO_NOT_TRACK``) before Evidently is first imported.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from radvigil.errors import DataError
from radvigil.monitoring.features import output_features
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.windows import WindowData


@dataclass(frozen=True)
class TabularDrift:
    """Where the report went and Evidently's summary: drifted columns, and per column its drift
    score (a p-value for its default tests on small samples)."""

    path: Path
    drifted_columns: int
    drift_share: float
    columns: dict[str, float]


@dataclass(frozen=True)
class EmbeddingVerdict:
    """Evidently's default embedding drift verdict: the classifier AUC and whether it drifted."""

    score: float
    drift: bool
    method: str


def _evidently() -> ModuleType:
    """Import Evidently with its usage telemetry disabled and its import-time warnings muted."""
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["EVIDENTLY_DISABLE_TELEMETRY"] = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        import evidently
        import evidently.presets

    return evidently


def tabular_frame(data: WindowData, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Image statistics, metadata and output features of a window as one table."""
    parts = [p for p in (data.stats, data.metadata) if p is not None]
    if data.probs is not None:
        parts.append(output_features(data.probs, class_names))
    if not parts:
        raise DataError("the window has no tabular features to report on")
    return pd.concat([p.reset_index(drop=True) for p in parts], axis=1)


def write_evidently_report(
    profile: ReferenceProfile, window: WindowData, path: str | Path
) -> TabularDrift:
    """Write Evidently's data-drift HTML report of ``window`` vs the reference to ``path``."""
    evidently = _evidently()
    reference = tabular_frame(profile.reference, profile.class_names)
    current = tabular_frame(window, profile.class_names)
    columns = [c for c in reference.columns if c in current.columns]
    categorical = [c for c in columns if reference[c].dtype == object]
    definition = evidently.DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical],
        categorical_columns=categorical,
    )
    report = evidently.Report([evidently.presets.DataDriftPreset()])
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = report.run(
                evidently.Dataset.from_pandas(current[columns], data_definition=definition),
                evidently.Dataset.from_pandas(reference[columns], data_definition=definition),
            )
        snapshot.save_html(str(target))
        return _summary(target, snapshot.dict()["metrics"])
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise DataError(f"Evidently could not build the drift report: {exc}") from exc


def _summary(path: Path, metrics: list[dict[str, Any]]) -> TabularDrift:
    counted = next(m for m in metrics if m["config"]["type"].endswith("DriftedColumnsCount"))
    per_column = {
        m["config"]["column"]: float(m["value"])
        for m in metrics
        if m["config"]["type"].endswith("ValueDrift")
    }
    return TabularDrift(
        path, int(counted["value"]["count"]), float(counted["value"]["share"]), per_column
    )


def evidently_embedding_drift(reference: np.ndarray, current: np.ndarray) -> EmbeddingVerdict:
    """Evidently's default embedding drift verdict for two (N, k) embedding samples."""
    _evidently()
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    columns = [f"e{i}" for i in range(np.shape(reference)[1])]
    method = model(bootstrap=len(reference) < 1000)
    state = np.random.get_state()  # Evidently's bootstrap reseeds NumPy's global generator.
    try:
        score, drift, name = method(
            pd.DataFrame(np.asarray(current, dtype=np.float64), columns=columns),
            pd.DataFrame(np.asarray(reference, dtype=np.float64), columns=columns),
        )
    finally:
        np.random.set_state(state)
    return EmbeddingVerdict(float(score), bool(drift), str(name))
