"""From uploaded bytes to a logged, decision-support prediction.

Decode and guard the image, run the model through the micro-batcher, decide findings at the
model's operating thresholds (the same rule as evaluation), assess quality and OOD against the
version's reference profile, and hand the record to the background writer.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from radvigil.data.image import Image
from radvigil.data.io import read_image
from radvigil.evaluation.decision import (
    finding_indices,
    flag_findings,
    predict_at_thresholds,
    threshold_vector,
)
from radvigil.model.preprocess import to_batch
from radvigil.service.assessment import Assessment, assess
from radvigil.service.batcher import MicroBatcher
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import PredictionOut, QualityFlags, StudyMetadata
from radvigil.store import PredictionRecord
from radvigil.store.schemas import new_request_id


def decode(data: bytes, filename: str, max_pixels: int) -> Image:
    """Read an upload with every guard of :func:`radvigil.data.io.read_image`."""
    return read_image(data, name=filename or "upload", max_pixels=max_pixels)


def study_hash(data: bytes, meta: StudyMetadata) -> str:
    """A pseudonymous study key: the hash of the study UID if given, else of the pixels' bytes."""
    source = meta.study_uid.encode() if meta.study_uid else data
    return hashlib.sha256(source).hexdigest()[:32]


def decide(served: ServedModel, probs: np.ndarray) -> tuple[str, list[str], float]:
    """Predicted class, flagged findings and confidence (probability of the predicted class)."""
    idx = finding_indices(served.classes, served.findings)
    thr = threshold_vector(served.thresholds, served.findings)
    row = probs[None, :]
    predicted = int(predict_at_thresholds(row, idx, thr)[0])
    flagged = [served.findings[i] for i, on in enumerate(flag_findings(row, idx, thr)[0]) if on]
    return served.classes[predicted], flagged, float(probs[predicted])


async def predict_images(
    served: ServedModel, images: list[Image], batcher: MicroBatcher
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and embeddings for decoded images, through the micro-batcher."""
    return await batcher.submit(to_batch([img.pixels for img in images], served.size), served.run)


def build(
    served: ServedModel,
    image: Image,
    probs: np.ndarray,
    embedding: np.ndarray,
    meta: StudyMetadata,
    key_hash: str,
    started: float,
    served_by: str = "champion",
    request_id: str | None = None,
) -> tuple[PredictionOut, PredictionRecord, Assessment]:
    """The API response and the stored record of one prediction."""
    predicted, flagged, confidence = decide(served, probs)
    assessment = assess(served, image, embedding)
    latency = (time.perf_counter() - started) * 1000
    request_id = request_id or new_request_id()
    probabilities = {c: round(float(p), 6) for c, p in zip(served.classes, probs, strict=True)}
    flags = QualityFlags(
        out_of_distribution=assessment.out_of_distribution,
        ood_score=assessment.ood_score,
        ood_threshold=assessment.ood_threshold,
        quality_issues=assessment.quality_issues,
        guards=assessment.guards,
        drifter=assessment.drifter,
    )
    out = PredictionOut(
        request_id=request_id,
        model_name=served.name,
        model_version=served.version,
        task=served.card["task"]["name"],
        probabilities=probabilities,
        predicted_class=predicted,
        findings=flagged,
        thresholds=served.thresholds,
        confidence=round(confidence, 6),
        flags=flags,
        routed_to_review=assessment.drifter,
        latency_ms=round(latency, 2),
        served_by=served_by,
    )
    record = PredictionRecord(
        id=request_id,
        model_name=served.name,
        model_version=served.version,
        task=out.task,
        probabilities=probabilities,
        predicted_class=predicted,
        findings=flagged,
        confidence=confidence,
        warnings=assessment.reasons,
        image_stats=assessment.stats,
        embedding=assessment.reduced_embedding,
        ood_score=assessment.ood_score,
        latency_ms=latency,
        site=meta.site,
        view_position=meta.view or image.meta.view_position,
        study_hash=key_hash,
        routed_to_review=assessment.drifter,
        served_by=served_by,
        review_image=assessment.review_png if assessment.drifter else None,
    )
    return out, record, assessment
