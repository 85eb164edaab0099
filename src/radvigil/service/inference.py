"""From uploaded bytes to a logged, decision-support prediction.

:func:`score` is the micro-batcher's one worker call per batch: decode and guard each image,
preprocess, run the model once, decide findings at the model's operating thresholds (the same
rule as evaluation) and assess quality and OOD against the version's reference profile for the
whole batch. Doing it all in one thread hop (instead of one per step) is what keeps the event
loop free on a small machine. :func:`build` then makes the response and the stored record.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radvigil.data.image import Image
from radvigil.data.io import read_image
from radvigil.errors import RadvigilError
from radvigil.evaluation.decision import (
    finding_indices,
    flag_findings,
    predict_at_thresholds,
    row_thresholds,
)
from radvigil.model.preprocess import to_batch
from radvigil.monitoring.review_routing import ReviewPolicy
from radvigil.service.assessment import QC, Assessment, assess_batch, review_png
from radvigil.service.contract import refusal
from radvigil.service.errors import ApiError
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import PredictionOut, QualityFlags, StudyMetadata
from radvigil.store import PredictionRecord
from radvigil.store.schemas import new_request_id


def decode(data: bytes, label: str, max_pixels: int, max_decoded_bytes: int) -> Image:
    """Read an upload with every guard of :func:`radvigil.data.io.read_image`."""
    return read_image(
        data, name=label or "upload", max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes
    )


def study_hash(data: bytes, meta: StudyMetadata, key: bytes) -> str:
    """A pseudonymous study key: the HMAC of the study UID if given, else of the pixels' bytes.

    Keyed (``RADVIGIL_STUDY_HASH_KEY``, or derived from the audit key), so someone holding
    the database cannot confirm a guessed study UID by hashing it.
    """
    source = meta.study_uid.encode() if meta.study_uid else data
    return hmac.new(key, source, hashlib.sha256).hexdigest()[:32]


@dataclass
class Job:
    """One image for one model version: raw upload bytes, or pixels already decoded (shadow)."""

    served: ServedModel
    data: bytes | None = None
    filename: str = "upload"
    image: Image | None = None
    max_pixels: int = 50_000_000
    max_decoded_bytes: int = 64 * 1024 * 1024
    keep_review_png: bool = False
    review: ReviewPolicy | None = None
    # The study's site has a label budget: its budgeted queue may offer any of its studies, not
    # only routed ones, so the review image is kept for every study (with keep_review_png).
    keep_unrouted_png: bool = False
    # The study's site: a version with thresholds fitted on that site's cases flags it at them.
    site: str | None = None


@dataclass
class Scored:
    """One image through the model: pixels, outputs, decision and monitoring assessment."""

    image: Image
    probs: np.ndarray
    embedding: np.ndarray
    predicted: str
    findings: list[str]
    confidence: float
    assessment: Assessment


def score(jobs: list[Job]) -> list[Scored | Exception]:
    """Decode, preprocess, run and assess a micro-batch (one model call per model version).

    A job whose image cannot be read gets its own exception back; the others are unaffected.
    """
    results: list[Scored | Exception] = [ValueError("not scored")] * len(jobs)
    images: dict[int, Image] = {}
    for i, job in enumerate(jobs):
        try:
            if job.image is not None:
                images[i] = job.image
                continue
            image = decode(job.data or b"", job.filename, job.max_pixels, job.max_decoded_bytes)
            reason = refusal(image, QC)
            if reason is not None:
                raise ApiError(
                    422, "not_a_chest_radiograph", f"{job.filename}: refused, not scored: {reason}"
                )
            images[i] = image
        except RadvigilError as exc:
            results[i] = exc
    groups: dict[int, list[int]] = {}
    for i in images:
        groups.setdefault(id(jobs[i].served), []).append(i)
    for positions in groups.values():
        served = jobs[positions[0]].served
        scored: Sequence[Scored | Exception]
        try:
            first = jobs[positions[0]]
            scored = _score_one_model(
                served,
                [images[i] for i in positions],
                first.keep_review_png,
                first.review,
                [jobs[i].site for i in positions],
            )
        except Exception as exc:  # the model's failure goes to every request of its batch
            scored = [exc for _ in positions]
        for i, result in zip(positions, scored, strict=True):
            results[i] = result
    for job, result in zip(jobs, results, strict=True):
        keep = job.keep_review_png and job.keep_unrouted_png
        if keep and isinstance(result, Scored) and result.assessment.review_png is None:
            result.assessment.review_png = review_png(result.image.pixels)
    return results


def _score_one_model(
    served: ServedModel,
    images: list[Image],
    keep_png: bool,
    review: ReviewPolicy | None,
    sites: list[str | None],
) -> list[Scored]:
    probs, embeddings = served.run(to_batch([img.pixels for img in images], served.size))
    predicted, flagged, confidence = decide_batch(served, probs, sites)
    assessments = assess_batch(
        served,
        images,
        embeddings,
        keep_review_png=keep_png,
        confidences=confidence,
        review=review,
    )
    return [
        Scored(images[i], probs[i], embeddings[i], predicted[i], flagged[i], confidence[i], a)
        for i, a in enumerate(assessments)
    ]


def decide_batch(
    served: ServedModel, probs: np.ndarray, sites: list[str | None] | None = None
) -> tuple[list[str], list[list[str]], list[float]]:
    """Predicted class, flagged findings and confidence (probability of the predicted class),
    each study at its site's own thresholds where the version has them."""
    idx = finding_indices(served.classes, served.findings)
    thr = row_thresholds(served.thresholds, served.findings, sites, served.site_thresholds)
    predicted = predict_at_thresholds(probs, idx, thr)
    flags = flag_findings(probs, idx, thr)
    names = [served.classes[int(p)] for p in predicted]
    flagged = [[served.findings[j] for j, on in enumerate(row) if on] for row in flags]
    confidence = [float(probs[i, int(p)]) for i, p in enumerate(predicted)]
    return names, flagged, confidence


def build(
    served: ServedModel,
    scored: Scored,
    meta: StudyMetadata,
    key_hash: str,
    started: float,
    served_by: str = "champion",
    request_id: str | None = None,
) -> tuple[PredictionOut, PredictionRecord]:
    """The API response and the stored record of one prediction."""
    assessment, image, probs = scored.assessment, scored.image, scored.probs
    predicted, flagged, confidence = scored.predicted, scored.findings, scored.confidence
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
        task=served.card.task.name,
        probabilities=probabilities,
        predicted_class=predicted,
        findings=flagged,
        thresholds=served.card.operating_thresholds(meta.site),
        confidence=round(confidence, 6),
        flags=flags,
        routed_to_review=assessment.routed,
        review_reasons=assessment.reasons if assessment.routed else [],
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
        routed_to_review=assessment.routed,
        served_by=served_by,
        review_image=assessment.review_png,
    )
    return out, record
