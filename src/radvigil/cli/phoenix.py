"""``radvigil monitor export-phoenix``: monitoring windows as Arize Phoenix inferences."""

from __future__ import annotations

from pathlib import Path

import typer

from radvigil.cli.admin import database
from radvigil.cli.common import console
from radvigil.cli.context import registry
from radvigil.config import get_settings
from radvigil.errors import DataError
from radvigil.loop.phoenix import primary_frame, reference_frame, write_export
from radvigil.monitoring import ReferenceProfile
from radvigil.store import FeedbackStore, MonitorResultStore, PredictionStore


def export_phoenix(
    out: Path = typer.Argument(
        ..., help="Folder for primary.parquet, reference.parquet, schema.json."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Registered model (RADVIGIL_MODEL_NAME)."
    ),
    version: str = typer.Option(
        "champion", help="Model version or alias whose predictions to export."
    ),
    limit: int = typer.Option(50_000, min=1, help="Most recent predictions to export, at most."),
) -> None:
    """Export a model version's predictions (embeddings, labels, drift flags) and its reference
    profile as parquet in the Arize Phoenix inference schema (open them with the README recipe)."""
    name = model or get_settings().model_name
    ref = f"{name}@{version}" if not version.isdigit() else f"{name}/{version}"
    loaded = registry().load(ref)
    if loaded.profile_dir is None:
        raise DataError(f"{loaded.name}/{loaded.version} has no reference profile to compare with")
    profile = ReferenceProfile.from_path(loaded.profile_dir)
    db = database()
    records = PredictionStore(db).list(
        model_version=loaded.version, limit=limit, newest_first=True
    )[::-1]
    labels = FeedbackStore(db).latest_labels(model_version=loaded.version)
    results = MonitorResultStore(db).list(
        model_name=name, model_version=loaded.version, limit=None, newest_first=False
    )
    primary = primary_frame(records, labels, results)
    paths = write_export(out, primary, reference_frame(profile))
    flagged = int(primary["window_drifted"].fillna(False).astype(bool).sum()) if records else 0
    console.print(
        f"{len(records)} predictions of {name}/{loaded.version} ({len(labels)} labelled, "
        f"{flagged} in drifted windows) and {len(profile.reference)} reference rows:"
    )
    for path in paths:
        console.print(f"  {path}")
