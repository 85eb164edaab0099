"""Predictions: one image, a batch, or one image with a Grad-CAM explanation."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from PIL import Image as PILImage
from pydantic import ValidationError

from radvigil.data.image import Image
from radvigil.model.gradcam import overlay
from radvigil.monitoring.review_routing import ReviewPolicy
from radvigil.service import inference
from radvigil.service.deps import Predictor, State
from radvigil.service.errors import ApiError
from radvigil.service.explanations import explain_slot
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import BatchOut, ExplainOut, PredictionOut, StudyMetadata
from radvigil.service.state import ServiceState
from radvigil.store import ApiKeyPublic, PredictionRecord

router = APIRouter(prefix="/v1", tags=["predict"])
log = logging.getLogger(__name__)
# Advisory only: the format is decided by magic bytes in read_image (anything else is 415).
ACCEPTED_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "application/dicom",
        "image/dicom",
        "application/octet-stream",
        "",
    }
)
ERRORS = {
    400: {"description": "unreadable, unsafe or unsupported image"},
    401: {"description": "no valid API key"},
    403: {"description": "role not allowed"},
    413: {"description": "upload too large"},
    415: {"description": "not PNG, JPEG or DICOM (by the file's first bytes)"},
    422: {"description": "not a chest radiograph (refused, not scored), or bad metadata"},
    429: {"description": "rate limit exceeded"},
    503: {"description": "no model loaded"},
}
META_HELP = 'Optional JSON, e.g. {"site": "ward-3", "view": "PA"}'


MAX_METADATA_CHARS = 4096


def _metadata(raw: str | None) -> StudyMetadata:
    if not raw:
        return StudyMetadata()
    if len(raw) > MAX_METADATA_CHARS:
        raise ApiError(422, "invalid_metadata", f"metadata is over {MAX_METADATA_CHARS} characters")
    try:
        return StudyMetadata.model_validate(json.loads(raw))
    except (json.JSONDecodeError, ValidationError, TypeError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if not isinstance(exc, RecursionError) else "too deep"
        raise ApiError(
            422,
            "invalid_metadata",
            f"metadata must be a JSON object with site/view/study_uid strings: {detail}",
        ) from exc


def _check_type(content_type: str | None, name: str) -> None:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in ACCEPTED_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{name}: content type {kind!r} is not an image; send PNG, JPEG or DICOM",
        )


async def _read(state: ServiceState, upload: UploadFile, field: str) -> tuple[bytes, str]:
    """A multipart file's bytes (size-checked), named by its form field; decoding is batched.

    Messages name the field (``files[1]``), never the client's file name: file names from
    hospital systems often carry patient names or record numbers.
    """
    _check_type(upload.content_type, field)
    limit = state.settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"{field}: upload exceeds {limit:,} bytes")
    return data, field


async def _read_body(state: ServiceState, request: Request) -> tuple[bytes, str]:
    """A raw ``image/png|jpeg|dicom`` request body, read up to the upload limit."""
    _check_type(request.headers.get("content-type"), "request body")
    limit = state.settings.max_upload_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "upload_too_large", f"request body exceeds {limit:,} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ApiError(
            422, "invalid_request", "send the image as a multipart 'file' field or as the body"
        )
    return data, "upload"


def _job(state: ServiceState, served: ServedModel, data: bytes, filename: str) -> inference.Job:
    return inference.Job(
        served,
        data,
        filename,
        max_pixels=state.settings.max_image_pixels,
        max_decoded_bytes=state.settings.max_decoded_bytes,
        keep_review_png=state.settings.store_review_images,
        review=review_policy(state),
    )


def review_policy(state: ServiceState) -> ReviewPolicy:
    """The settings' routing of low-confidence and audit-sampled cases to review."""
    return ReviewPolicy(state.settings.review_confidence, state.settings.review_audit_share)


async def _predict(
    state: ServiceState,
    key: ApiKeyPublic,
    items: list[tuple[bytes, str]],
    meta: StudyMetadata,
    started: float,
) -> list[tuple[PredictionOut, inference.Scored]]:
    """Route each study (champion, or challenger for a canary share), log it, shadow it.

    Studies of a batch go to the micro-batcher together so they share one model call; nothing
    is logged unless every image of the request could be read.
    """
    routed = []
    for data, _ in items:
        digest = inference.study_hash(data, meta, state.settings.resolved_study_hash_key)
        routed.append((digest, *state.models.route(digest)))
    scored = await asyncio.gather(
        *(
            state.batcher.submit(_job(state, served, data, name))
            for (data, name), (_, served, _) in zip(items, routed, strict=True)
        ),
        return_exceptions=True,
    )
    for result in scored:
        if isinstance(result, BaseException):
            raise result
    outs = []
    shadow = state.models.shadow()
    for result, (digest, served, served_by) in zip(scored, routed, strict=True):
        out, record = inference.build(served, result, meta, digest, started, served_by)
        _log(state, key, record, out.flags.drifter)
        if shadow is not None and served_by == "champion":
            task = asyncio.create_task(
                _shadow(state, key, shadow, result.image, meta, digest, record.id)
            )
            state.background.add(task)
            task.add_done_callback(state.background.discard)
        outs.append((out, result))
    return outs


def _log(state: ServiceState, key: ApiKeyPublic, record: PredictionRecord, drifter: bool) -> None:
    state.sink.remember(record.id, key.name)
    state.writer.submit(record)
    state.metrics.predictions.labels(
        record.model_version, record.predicted_class, record.served_by
    ).inc()
    if drifter and record.served_by != "shadow":
        state.metrics.drifters.labels(record.model_version).inc()


async def _shadow(
    state: ServiceState,
    key: ApiKeyPublic,
    shadow: ServedModel,
    image: Image,
    meta: StudyMetadata,
    digest: str,
    primary_id: str,
) -> None:
    """Score with the challenger and store the result; never returned to the caller."""
    started = time.perf_counter()
    try:
        job = inference.Job(shadow, image=image, keep_review_png=state.settings.store_review_images)
        scored = await state.batcher.submit(job)
        _, record = inference.build(shadow, scored, meta, digest, started, "shadow")
        _log(state, key, record.model_copy(update={"shadow_of": primary_id}), False)
    except Exception:  # a shadow failure must never affect clinical traffic
        log.exception("shadow scoring by %s/%s failed", shadow.name, shadow.version)


RAW_BODY = {
    "requestBody": {
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}}
            for kind in ("image/png", "image/jpeg", "application/dicom")
        }
    }
}


@router.post(
    "/predict",
    response_model=PredictionOut,
    responses=ERRORS,
    summary="Predict one PNG, JPEG or DICOM radiograph (multipart or raw body)",
    openapi_extra=RAW_BODY,
)
async def predict(
    request: Request,
    state: State,
    key: Predictor,
    file: UploadFile | None = File(None, description="The image (or send it as the raw body)"),
    metadata: str | None = Form(None, description=META_HELP),
    metadata_header: str | None = Header(
        None, alias="X-Study-Metadata", description="Metadata JSON with a raw-body upload"
    ),
) -> PredictionOut:
    """Multipart (``file`` + optional ``metadata``) or the raw image as the request body
    (``Content-Type: image/png|image/jpeg|application/dicom``, metadata in ``X-Study-Metadata``).
    """
    started = time.perf_counter()
    if file is not None:
        meta, item = _metadata(metadata), await _read(state, file, "file")
    else:
        meta, item = _metadata(metadata_header), await _read_body(state, request)
    return (await _predict(state, key, [item], meta, started))[0][0]


@router.post(
    "/predict/batch",
    response_model=BatchOut,
    responses=ERRORS,
    summary="Predict up to 16 images in one request",
)
async def predict_batch(
    state: State,
    key: Predictor,
    files: list[UploadFile] = File(..., description="Up to 16 images"),
    metadata: str | None = Form(None, description=META_HELP),
) -> BatchOut:
    started = time.perf_counter()
    limit = state.settings.max_batch_images
    if len(files) > limit:
        raise ApiError(
            413, "batch_too_large", f"a batch holds at most {limit} images, got {len(files)}"
        )
    state.limiter.take(key, len(files) - 1)  # one rate token per image (the first is paid)
    meta = _metadata(metadata)
    items = [await _read(state, f, f"files[{i}]") for i, f in enumerate(files)]
    return BatchOut(
        predictions=[out for out, _ in await _predict(state, key, items, meta, started)]
    )


@router.post(
    "/predict/explain",
    response_model=ExplainOut,
    responses=ERRORS,
    summary="Predict one image and return a Grad-CAM overlay of the evidence",
)
async def explain(
    state: State,
    key: Predictor,
    file: UploadFile = File(..., description="The image"),
    metadata: str | None = Form(None, description=META_HELP),
    target: str | None = Query(
        None, max_length=100, description="Class to explain (default: the prediction)"
    ),
) -> ExplainOut:
    started = time.perf_counter()
    state.limiter.take(key, state.settings.explain_rate_cost - 1)  # the first token is paid
    meta = _metadata(metadata)
    item = await _read(state, file, "file")
    served = state.models.require_champion()
    if target is not None and target not in served.classes:
        raise ApiError(400, "invalid_input", f"target {target!r} is not one of {served.classes}")
    async with explain_slot(state):
        out, scored = (await _predict(state, key, [item], meta, started))[0]
        image = scored.image
        if out.served_by == "challenger" and state.models.challenger is not None:
            served = state.models.challenger
        explained = target or out.predicted_class
        heatmap = await asyncio.to_thread(
            served.explain, image.pixels, served.classes.index(explained)
        )
    buffer = io.BytesIO()
    PILImage.fromarray(overlay(image.pixels, heatmap)).save(buffer, format="PNG")
    return ExplainOut(
        prediction=out,
        explained_class=explained,
        heatmap_png_base64=base64.b64encode(buffer.getvalue()).decode(),
        width=image.pixels.shape[1],
        height=image.pixels.shape[0],
    )
