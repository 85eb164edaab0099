"""The structured facts a note may state, and calibrated probabilities turned into bands."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Band = Literal["very_low", "low", "medium", "high", "very_high"]
# Upper edges of the bands over a calibrated probability (the last band ends at 1).
BANDS: tuple[tuple[float, Band], ...] = (
    (0.10, "very_low"),
    (0.30, "low"),
    (0.70, "medium"),
    (0.90, "high"),
    (1.01, "very_high"),
)

Key = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_-]+$")]


def band_of(probability: float) -> Band:
    """The band of a calibrated probability in [0, 1]."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    return next(band for edge, band in BANDS if probability < edge)


class NoteFacts(BaseModel):
    """Everything a note may say: no image, no identifiers, no dates, no free text.

    ``findings`` are the classes the model can flag; ``found`` those flagged at the model's
    operating thresholds; ``bands`` each finding's calibrated probability in words.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    findings: tuple[Key, ...] = Field(min_length=1)
    found: tuple[Key, ...] = ()
    bands: dict[Key, Band]
    low_quality: bool = False
    unusual_image: bool = False
    model_version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,32}$")]
    language: Key = "en"

    @model_validator(mode="after")
    def _consistent(self) -> NoteFacts:
        if not set(self.found) <= set(self.findings):
            raise ValueError(f"found {list(self.found)} must be among {list(self.findings)}")
        if set(self.bands) != set(self.findings):
            raise ValueError("bands must name exactly the findings")
        return self

    @property
    def flagged(self) -> bool:
        """Whether the image quality or its unusualness makes the result less certain."""
        return self.low_quality or self.unusual_image

    def numbers(self) -> set[str]:
        """The numbers the facts hold (only the model version's): a note may state no other."""
        return set(_digits(self.model_version))


def _digits(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def facts_from_prediction(
    *,
    findings: list[str] | tuple[str, ...],
    found: list[str] | tuple[str, ...],
    probabilities: dict[str, float],
    low_quality: bool,
    unusual_image: bool,
    model_version: str,
    language: str = "en",
) -> NoteFacts:
    """Facts from a prediction's plain values (the loop layer adapts stored records)."""
    return NoteFacts(
        findings=tuple(findings),
        found=tuple(f for f in findings if f in set(found)),
        bands={f: band_of(min(1.0, max(0.0, float(probabilities[f])))) for f in findings},
        low_quality=low_quality,
        unusual_image=unusual_image,
        model_version=model_version,
        language=language,
    )
