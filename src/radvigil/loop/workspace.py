"""The collaborators a loop action works with, built once by the entry point that runs it.

Retraining and site calibration read labelled cases from the stores, write dataset versions to
the catalog and model versions to the registry, gate them with the criteria, write reports and
audit records, and act as someone. The CLI and the demo build one :class:`Workspace` and hand it
over instead of passing the same nine collaborators to every call (issue #32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from radvigil.data.catalog import DatasetCatalog
from radvigil.evaluation import GateCriteria
from radvigil.loop.actions import Recorder
from radvigil.registry import Registry
from radvigil.store import FeedbackStore, PredictionStore

if TYPE_CHECKING:
    from radvigil.loop.deployment import Deployments


@dataclass(frozen=True)
class Workspace:
    """Stores, catalog, registry, gate criteria, reports folder, audit recorder and actor.

    ``deployments`` is the deployment authority when registry trust is enforced: aliases then
    move through it (signed gate records), never through the registry directly.
    """

    catalog: DatasetCatalog
    registry: Registry
    predictions: PredictionStore
    feedback: FeedbackStore
    criteria: GateCriteria
    reports_dir: Path
    record: Recorder
    actor: str
    deployments: Deployments | None = None
