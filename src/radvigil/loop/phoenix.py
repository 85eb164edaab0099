"""Monitoring windows as Arize Phoenix inferences: two frames and the schema that reads them.

Phoenix compares a *primary* set of inferences (here: the served predictions, with their reduced
embeddings, image statistics, metadata, clinicians' labels and the drift flags of the monitoring
window each belongs to) against a *reference* set (the model version's reference profile: the
validation embeddings and outputs the monitors compare with). Phoenix itself is not a radvigil
dependency (its graphql-core pin clashes with MLflow's); the frames are written as parquet with a
``schema.json`` holding the keyword arguments of ``phoenix.Schema`` (see the README recipe).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from radvigil.errors import DataError
from radvigil.monitoring import ReferenceProfile
from radvigil.store import MonitorResultPublic, PredictionRecord
from radvigil.store.monitor_results import OVERALL

EMBEDDING = "embedding"
FEATURES = ("site", "view_position")
TAGS = ("model_version", "served_by", "routed_to_review", "window_start", "window_drifted")


def _drift_flags(
    records: Sequence[PredictionRecord], results: Sequence[MonitorResultPublic]
) -> pd.DataFrame:
    """Per prediction: the start of its overall window and each detector's verdict on it."""
    overall = [r for r in results if r.group == OVERALL]
    detectors = sorted({r.detector for r in overall})
    windows: dict[tuple[str, Any, Any], dict[str, bool]] = {}
    for r in overall:
        windows.setdefault((r.model_version, r.window_start, r.window_end), {})[r.detector] = bool(
            r.drift
        )
    rows = []
    for record in records:
        found = next(
            (
                (start, flags)
                for (version, start, end), flags in windows.items()
                if version == record.model_version and start <= record.created_at <= end
            ),
            None,
        )
        start, flags = found if found else (None, {})
        row: dict[str, Any] = {"window_start": start}
        row.update({f"drift_{d}": flags.get(d) for d in detectors})
        row["window_drifted"] = any(flags.values()) if flags else None
        rows.append(row)
    return pd.DataFrame(rows, index=range(len(records)))


def primary_frame(
    records: Sequence[PredictionRecord],
    labels: Mapping[str, str],
    results: Sequence[MonitorResultPublic],
) -> pd.DataFrame:
    """Served predictions, one row each, with labels (None when unlabelled) and drift flags."""
    base = pd.DataFrame(
        {
            "prediction_id": [r.id for r in records],
            "timestamp": pd.to_datetime([r.created_at for r in records], utc=True),
            "prediction_label": [r.predicted_class for r in records],
            "prediction_score": [float(r.confidence) for r in records],
            "actual_label": [labels.get(r.id) for r in records],
            "model_version": [r.model_version for r in records],
            "served_by": [r.served_by for r in records],
            "routed_to_review": [r.routed_to_review for r in records],
            "ood_score": [r.ood_score for r in records],
            "site": [r.site for r in records],
            "view_position": [r.view_position for r in records],
            EMBEDDING: [list(r.embedding) if r.embedding else None for r in records],
        }
    )
    stats = pd.DataFrame([_numeric(r.image_stats) for r in records], index=base.index)
    stats.columns = [f"stat_{c}" for c in stats.columns]
    return pd.concat([base, stats, _drift_flags(records, results)], axis=1)


def _numeric(stats: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in stats.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def reference_frame(profile: ReferenceProfile) -> pd.DataFrame:
    """The reference profile's rows: reduced embeddings, predicted and true labels, statistics."""
    ref, classes = profile.reference, list(profile.class_names)
    if ref.probs is None:
        raise DataError("the reference profile holds no probabilities to export")
    n = len(ref.probs)
    predicted = ref.probs.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "prediction_id": [f"reference-{i}" for i in range(n)],
            "prediction_label": [classes[i] for i in predicted],
            "prediction_score": ref.probs.max(axis=1).astype(float),
            "actual_label": [
                classes[int(y)] if ref.labels is not None and int(y) >= 0 else None
                for y in (ref.labels if ref.labels is not None else [-1] * n)
            ],
            "ood_score": ref.ood_scores if ref.ood_scores is not None else [None] * n,
            EMBEDDING: [list(map(float, e)) for e in ref.embeddings]
            if ref.embeddings is not None
            else [None] * n,
        }
    )
    if ref.stats is not None:
        stats = ref.stats.reset_index(drop=True).select_dtypes("number").add_prefix("stat_")
        frame = pd.concat([frame, stats], axis=1)
    return frame


def schema(frame: pd.DataFrame) -> dict[str, Any]:
    """Keyword arguments of ``phoenix.Schema`` for a frame made here (primary or reference)."""
    columns = set(frame.columns)
    features = [c for c in (*FEATURES, "ood_score") if c in columns]
    features += sorted(c for c in columns if c.startswith("stat_"))
    tags = [c for c in TAGS if c in columns] + sorted(c for c in columns if c.startswith("drift_"))
    kwargs: dict[str, Any] = {
        "prediction_id_column_name": "prediction_id",
        "prediction_label_column_name": "prediction_label",
        "prediction_score_column_name": "prediction_score",
        "actual_label_column_name": "actual_label",
        "feature_column_names": features,
        "tag_column_names": tags,
        "embedding_feature_column_names": {"image_embedding": {"vector_column_name": EMBEDDING}},
    }
    if "timestamp" in columns:
        kwargs["timestamp_column_name"] = "timestamp"
    return kwargs


def write_export(directory: Path, primary: pd.DataFrame, reference: pd.DataFrame) -> list[Path]:
    """``primary.parquet``, ``reference.parquet`` and ``schema.json`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "primary.parquet", directory / "reference.parquet"]
    primary.to_parquet(paths[0], index=False)
    reference.to_parquet(paths[1], index=False)
    schemas = {"primary": schema(primary), "reference": schema(reference)}
    paths.append(directory / "schema.json")
    paths[2].write_text(json.dumps(schemas, indent=2) + "\n")
    return paths
