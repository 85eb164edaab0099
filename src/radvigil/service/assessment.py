"""Per-prediction monitoring: image statistics, quality issues, guards, OOD score, drifter flag."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from radvigil.data.image import Image
from radvigil.data.qc_checks import QCConfig, image_issues, pixel_stats
from radvigil.monitoring.drifters import is_drifter, ood_score
from radvigil.monitoring.features import image_stats
from radvigil.monitoring.guards import check_guards
from radvigil.service.lifecycle import ServedModel

QC = QCConfig()
REVIEW_IMAGE_SIDE = 512


@dataclass
class Assessment:
    """What the monitors learned about one case."""

    stats: dict[str, float]
    quality_issues: list[str] = field(default_factory=list)
    ood_score: float | None = None
    ood_threshold: float | None = None
    reduced_embedding: list[float] | None = None
    guards: dict[str, str] = field(default_factory=dict)
    drifter: bool = False
    reasons: list[str] = field(default_factory=list)
    review_png: bytes | None = None

    @property
    def out_of_distribution(self) -> bool:
        return (
            self.ood_score is not None
            and self.ood_threshold is not None
            and (self.ood_score > self.ood_threshold)
        )


def quality_issues(image: Image, std: float | None = None, config: QCConfig = QC) -> list[str]:
    """The per-image QC checks of ``radvigil data validate`` (same function), as ``check: why``."""
    stats = pixel_stats(image.pixels, image.meta.colorfulness, config, std)
    return [f"{name}: {message}" for name, message in image_issues(stats, config).items()]


def assess(served: ServedModel, image: Image, embedding: np.ndarray) -> Assessment:
    stats = image_stats(image.pixels, image.meta.bit_depth)
    issues = quality_issues(image, stats["std"])
    result = Assessment(
        stats={k: round(float(v), 4) for k, v in stats.items()}, quality_issues=issues
    )
    profile = served.profile
    if profile is not None:
        result.ood_score = round(ood_score(profile, embedding[None, :]), 4)
        result.ood_threshold = round(float(profile.ood.threshold), 4)
        result.reduced_embedding = [
            round(float(v), 5) for v in profile.projection.reduce(embedding[None, :])[0]
        ]
        raised = check_guards(stats, profile.guard_bands)
        result.guards = {g.guard: g.reason for g in raised}
        result.drifter, result.reasons = is_drifter(
            result.ood_score, issues, profile, guards=raised
        )
    else:
        result.drifter, result.reasons = bool(issues), [f"quality flag: {i}" for i in issues]
    if result.drifter:
        result.review_png = _png(image.pixels)
    return result


def _png(pixels: np.ndarray) -> bytes:
    """De-identified pixels only (no DICOM header), at most 512 px on the longer side."""
    if max(pixels.shape) > REVIEW_IMAGE_SIDE:
        scale = REVIEW_IMAGE_SIDE / max(pixels.shape)
        h, w = round(pixels.shape[0] * scale), round(pixels.shape[1] * scale)
        pixels = np.asarray(PILImage.fromarray(pixels).resize((w, h), PILImage.Resampling.BILINEAR))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
