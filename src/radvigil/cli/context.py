"""Builders the CLI commands share: settings-backed catalog and registry."""

from __future__ import annotations

from radvigil.config import get_settings
from radvigil.data.catalog import DatasetCatalog
from radvigil.registry import Registry


def catalog() -> DatasetCatalog:
    settings = get_settings()
    settings.ensure_home()
    return DatasetCatalog(settings.datasets_dir)


def registry() -> Registry:
    settings = get_settings()
    settings.ensure_home()
    return Registry(
        settings.resolved_tracking_uri, settings.artifacts_dir, settings.home_dir / "model-cache"
    )
