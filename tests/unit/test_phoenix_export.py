"""Monitoring windows exported as Arize Phoenix inferences (parquet + the Schema's arguments).

Real predictions of the stand-in model are stored in SQLite, the real monitors evaluate their
windows (one of them brightened), and the export is read back from parquet. Phoenix itself is
not installed here (it cannot share a venv with MLflow); the README recipe opens the files.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd

from radvigil.loop.monitor_runs import run_monitors
from radvigil.loop.phoenix import primary_frame, reference_frame, schema, write_export
from radvigil.store import FeedbackCreate
from tests.unit.test_monitoring_runner import CONFIG, T0, pool, store_predictions, stores

__all__ = ["pool", "stores"]  # fixtures shared with the runner's tests


def test_export_carries_embeddings_labels_and_window_drift_flags(stores, pool, tmp_path: Path):
    profile, held_out = pool
    records = store_predictions(stores, profile, held_out[:50], start=0, sites=["A"])
    records += store_predictions(
        stores, profile, held_out[50:100], start=50, sites=["A"], shift=True
    )
    for record in records[:5]:
        stores.feedback.add(
            FeedbackCreate(prediction_id=record.id, label="normal"), reviewer="dr-a"
        )
    run_monitors(stores, profile, "m", "1", CONFIG, T0 + timedelta(days=1))
    results = stores.results.list(model_version="1", limit=None, newest_first=False)
    labels = stores.feedback.latest_labels(model_version="1")

    primary = primary_frame(records, labels, results)
    reference = reference_frame(profile)
    paths = write_export(tmp_path / "phoenix", primary, reference)

    back = pd.read_parquet(paths[0])
    assert len(back) == 100 and back["prediction_id"].is_unique
    assert back["actual_label"].notna().sum() == 5
    dims = {len(v) for v in back["embedding"]}
    assert dims == {profile.reference.embeddings.shape[1]}
    clean, shifted = back.iloc[:50], back.iloc[50:]
    assert not clean["window_drifted"].any()
    assert shifted["window_drifted"].all() and shifted["drift_image_stats"].all()
    assert back["window_start"].nunique() == 2
    ref_back = pd.read_parquet(paths[1])
    assert len(ref_back) == len(profile.reference.probs)
    assert {len(v) for v in ref_back["embedding"]} == dims

    schemas = json.loads(paths[2].read_text())
    for frame, kwargs in ((back, schemas["primary"]), (ref_back, schemas["reference"])):
        named = [v for k, v in kwargs.items() if k.endswith("_column_name")]
        named += kwargs["feature_column_names"] + kwargs["tag_column_names"]
        named.append(
            kwargs["embedding_feature_column_names"]["image_embedding"]["vector_column_name"]
        )
        assert set(named) <= set(frame.columns), set(named) - set(frame.columns)
    assert "drift_image_stats" in schemas["primary"]["tag_column_names"]
    assert "timestamp_column_name" not in schema(reference)
