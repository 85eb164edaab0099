"""Per-prediction monitoring: image statistics, quality issues, guards, OOD score, drifter flag."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from radvigil.data.image import Image
from radvigil.data.qc_checks import QCConfig, image_issues, pixel_stats
from radvigil.monitoring.drifters import is_drifter
from radvigil.monitoring.features import image_stats
from radvigil.monitoring.guards import check_guards
from radvigil.monitoring.profile import ReferenceProfile
from radvigil.monitoring.review_routing import ReviewPolicy, review_reasons
from radvigil.service.lifecycle import ServedModel

QC = QCConfig()
REVIEW_IMAGE_SIDE = 512
review_pngs_encoded = 0  # how many review PNGs this process encoded (tests read it; no timing)


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
    routed: bool = False  # to review: a drifter, low confidence or the audit sample
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


def assess_batch(
    served: ServedModel,
    images: Sequence[Image],
    embeddings: np.ndarray,
    *,
    keep_review_png: bool = True,
    confidences: Sequence[float] | None = None,
    review: ReviewPolicy | None = None,
) -> list[Assessment]:
    """Image statistics, QC, guards, OOD score, drifter verdict and review routing of a
    micro-batch of cases.

    The PCA projection and Mahalanobis score are one matrix product for the whole batch. With
    ``confidences`` and a ``review`` policy, low-confidence and audit-sampled cases are routed
    to review too. The review PNG is encoded only for routed cases and only when
    ``keep_review_png`` (the ``store_review_images`` setting): otherwise it would be thrown away.
    """
    results, raw_stats = [], []
    for image in images:
        stats = image_stats(image.pixels, image.meta.bit_depth)
        raw_stats.append(stats)
        results.append(
            Assessment(
                stats={k: round(float(v), 4) for k, v in stats.items()},
                quality_issues=quality_issues(image, stats["std"]),
            )
        )
    profile = served.profile if isinstance(served.profile, ReferenceProfile) else None
    if profile is not None and len(images):
        reduced = profile.projection.reduce(embeddings)
        scores = profile.ood.score(reduced)
        threshold = round(float(profile.ood.threshold), 4)
        for result, stats, row, score in zip(results, raw_stats, reduced, scores, strict=True):
            result.ood_score = round(float(score), 4)
            result.ood_threshold = threshold
            result.reduced_embedding = [round(float(v), 5) for v in row]
            raised = check_guards(stats, profile.guard_bands)
            result.guards = {g.guard: g.reason for g in raised}
            result.drifter, result.reasons = is_drifter(
                result.ood_score, result.quality_issues, profile, guards=raised
            )
    elif profile is None:
        for result in results:
            issues = result.quality_issues
            result.drifter, result.reasons = bool(issues), [f"quality flag: {i}" for i in issues]
    for i, (result, image) in enumerate(zip(results, images, strict=True)):
        extra = []
        if review is not None and confidences is not None:
            extra = review_reasons(confidences[i], image.pixels, review)
        result.reasons += extra
        result.routed = result.drifter or bool(extra)
        if result.routed and keep_review_png:
            result.review_png = review_png(image.pixels)
    return results


def review_png(pixels: np.ndarray) -> bytes:
    """De-identified pixels only (no DICOM header), at most 512 px on the longer side."""
    global review_pngs_encoded
    review_pngs_encoded += 1
    if max(pixels.shape) > REVIEW_IMAGE_SIDE:
        scale = REVIEW_IMAGE_SIDE / max(pixels.shape)
        h = max(1, round(pixels.shape[0] * scale))
        w = max(1, round(pixels.shape[1] * scale))
        pixels = np.asarray(PILImage.fromarray(pixels).resize((w, h), PILImage.Resampling.BILINEAR))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
