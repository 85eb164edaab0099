"""The model card every registered version carries: what it predicts, from what, and how well."""

from __future__ import annotations

from pydantic import BaseModel, Field

from radvigil.model.byom.record import ImportRecord
from radvigil.model.weights import WeightsRecord
from radvigil.task import Task

REVIEW_WARNING = (
    "Decision support only: this output is not a diagnosis and must be reviewed by a qualified "
    "clinician before any clinical decision."
)


class InputSpec(BaseModel):
    """How pixels must be prepared for the ONNX graph (see radvigil.model.preprocess)."""

    size: int
    channels: int = 1
    mean: float
    std: float
    layout: str = "N x 1 x H x W float32, (x/255 - mean) / std, bilinear/area resize"


class ModelCard(BaseModel):
    """Task, labels, input spec, calibration, thresholds, data lineage and metrics."""

    name: str
    task: Task
    backbone: str
    input: InputSpec
    temperature: float
    thresholds: dict[str, float]
    training_data_version: str
    code_commit: str
    config: dict
    metrics: dict[str, float] = Field(default_factory=dict)
    embedding_dim: int
    quantized: bool = False
    weights: WeightsRecord | None = Field(None, description="pretrained starting weights, if any")
    caveats: list[str] = Field(default_factory=list)
    warning: str = REVIEW_WARNING
    imported: ImportRecord | None = Field(None, description="set when radvigil did not train it")
    site_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per site, operating thresholds fitted on that site's own labelled cases "
        "(site calibration); a study from a listed site is flagged at them",
    )

    def operating_thresholds(self, site: str | None = None) -> dict[str, float]:
        """The per-finding decision thresholds for a study from ``site`` (the site's own where
        site calibration fitted them, the version's otherwise), as a copy a caller may change."""
        own = self.site_thresholds.get(site, {}) if site else {}
        return {finding: float(own.get(finding, cut)) for finding, cut in self.thresholds.items()}
