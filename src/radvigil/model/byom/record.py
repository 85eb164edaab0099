"""What an imported version's card records about where it came from and what was verified."""

from __future__ import annotations

from pydantic import BaseModel, Field

from radvigil.model.byom.extractor import ExtractorRecord

NOT_VERIFIED = [
    "how the vendor trained the model, on which data, and whether it overlaps radvigil's "
    "validation or test cases (radvigil has only the file and the declared source)",
    "the declared source, licence and intended use (recorded as stated by the importer)",
    "behaviour outside the validation data version's population, views and scanners",
    "anything about the graph's internals beyond ONNX validity (no weights to inspect, no "
    "Grad-CAM: explanations are occlusion maps)",
]


class ImportRecord(BaseModel):
    """Lineage and verification of a version radvigil did not train."""

    file_name: str
    file_sha256: str
    file_bytes: int
    source: str
    licence: str
    intended_use: str
    importer: str
    imported_at: str
    validation_data_version: str
    spec: dict
    thresholds_from: str = Field(description="fitted on validation, or the vendor's own")
    embedding_from: str
    extractor: ExtractorRecord | None = None
    verified: list[str] = Field(default_factory=list)
    not_verified: list[str] = Field(default_factory=lambda: list(NOT_VERIFIED))
