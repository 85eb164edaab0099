"""Request and response models of the HTTP API (separate from the store's table models)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from radvigil.data.io import VIEW_POSITIONS, view_position
from radvigil.model.card import REVIEW_WARNING
from radvigil.notes import check_no_phi

SITE_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"


class StudyMetadata(BaseModel):
    """Optional de-identified context sent with an image (JSON in the ``metadata`` form field)."""

    model_config = ConfigDict(extra="forbid")

    site: Annotated[str, StringConstraints(pattern=SITE_PATTERN)] | None = Field(
        None, description="A site code (letters, digits, . _ : -; at most 64): no free text."
    )
    view: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        None, description=f"One of {sorted(VIEW_POSITIONS)}; anything else is stored as 'other'."
    )
    study_uid: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        None, description="Hashed before storage; used for sticky canary routing."
    )

    @field_validator("view")
    @classmethod
    def _allowed_view(cls, value: str | None) -> str | None:
        return view_position(value)


class QualityFlags(BaseModel):
    """Checks on the input; any flag set routes the study to review."""

    out_of_distribution: bool = False
    ood_score: float | None = None
    ood_threshold: float | None = None
    quality_issues: list[str] = Field(default_factory=list)
    guards: dict[str, str] = Field(
        default_factory=dict,
        description="Per-case guards raised (inverted_polarity, field_of_view, intensity_lut, "
        "noise, sharpening, compression): guard -> reason. Any guard routes the study to review.",
    )
    drifter: bool = False


class PredictionOut(BaseModel):
    """One prediction: calibrated probabilities, findings at operating thresholds, warnings."""

    request_id: str
    model_name: str
    model_version: str
    task: str
    probabilities: dict[str, float]
    predicted_class: str
    findings: list[str]
    thresholds: dict[str, float]
    confidence: float
    flags: QualityFlags
    routed_to_review: bool = Field(
        description="Sent to the clinicians' review queue: a drifter, low confidence, or the "
        "audit sample (see review_reasons)."
    )
    review_reasons: list[str] = Field(
        default_factory=list, description="Why the study was routed to review (empty: it wasn't)."
    )
    latency_ms: float
    served_by: str = "champion"
    warning: str = REVIEW_WARNING
    created_at: datetime | None = None


class BatchOut(BaseModel):
    predictions: list[PredictionOut]


class ExplainOut(BaseModel):
    prediction: PredictionOut
    explained_class: str
    heatmap_png_base64: str = Field(description="Grad-CAM overlay, same size as the input.")
    width: int
    height: int


class ModelOut(BaseModel):
    name: str
    version: str
    alias: str
    task: str
    labels: list[str]
    findings: list[str]
    thresholds: dict[str, float]
    site_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per site, its own thresholds (site calibration): that site's studies are "
        "flagged at them.",
    )
    temperature: float
    input_size: int
    training_data_version: str
    loaded_at: datetime
    precision: str = Field("fp32", description="Graph being run: fp32 or int8.")
    precision_note: str | None = Field(
        None, description="Why an asked-for int8 graph is not the one served."
    )


class ModelsOut(BaseModel):
    champion: ModelOut
    challenger: ModelOut | None = None
    registry_conflict: str | None = Field(
        None,
        description="A change made in MLflow directly (alias or rollout) that this service "
        "refuses; the versions above are radvigil's own state (docs/registry-trust.md).",
    )


class ReviewItem(BaseModel):
    """A case waiting for a clinician's label (no image bytes; fetch them separately)."""

    request_id: str
    created_at: datetime
    model_version: str
    predicted_class: str
    probabilities: dict[str, float]
    confidence: float
    ood_score: float | None
    reasons: list[str]
    site: str | None
    view_position: str | None
    has_image: bool
    policy: str | None = Field(
        None, description="The label-selection policy that offered the case (budgeted sites)."
    )
    why: str | None = Field(None, description="Why the policy offered it (budgeted sites).")


class LabelBudgetOut(BaseModel):
    """A site's label budget and what it has spent (docs/onboarding.md)."""

    budget: int
    period: str
    policy: str
    audit_share: float
    spent: int
    audit_spent: int
    remaining: int


class ReviewQueueOut(BaseModel):
    total: int = Field(description="Cases waiting, counted up to 10,000.")
    total_capped: bool = Field(False, description="True: 10,000 or more cases wait.")
    items: list[ReviewItem]
    next_after: str | None = Field(
        None, description="Pass as ?after= for the next page (None: this page is the last)."
    )
    label_budget: LabelBudgetOut | None = None


class FeedbackIn(BaseModel):
    """A label for a prediction; the reviewer is taken from the API key, never the body."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    ]
    label: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None

    @field_validator("comment")
    @classmethod
    def _no_phi(cls, comment: str | None) -> str | None:
        """A comment feeds retraining and the audit trail: no names, ids or dates in it."""
        if comment and (problems := check_no_phi(comment)):
            raise ValueError(
                "the comment must not contain names, ids or dates: "
                + "; ".join(p.message for p in problems)
            )
        return comment


class RolloutIn(BaseModel):
    """Why (required, audited) and, for a canary, the share of studies."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=3, max_length=500)]
    share: float | None = Field(None, gt=0, le=0.5)
    force: bool = Field(
        False, description="Shadow, canary or promote a version without a passing gate (audited)."
    )


class ResolveIn(BaseModel):
    """Why the alert is resolved (required, audited)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=3, max_length=500)]
