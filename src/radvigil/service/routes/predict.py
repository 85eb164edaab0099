"""Predictions: one image, a batch, or one image with a Grad-CAM explanation."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time

from fastapi import APIRouter, File, Form, Query, UploadFile
from PIL import Image as PILImage
from pydantic import ValidationError

from radvigil.data.image import Image
from radvigil.model.gradcam import gradcam, overlay
from radvigil.service import inference
from radvigil.service.deps import Predictor, State
from radvigil.service.errors import ApiError
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import BatchOut, ExplainOut, PredictionOut, StudyMetadata
from radvigil.service.state import ServiceState
from radvigil.store import ApiKeyPublic, PredictionRecord

router = APIRouter(prefix="/v1", tags=["predict"])
log = logging.getLogger(__name__)
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
    415: {"description": "wrong content type"},
    429: {"description": "rate limit exceeded"},
    503: {"description": "no model loaded"},
}
META_HELP = 'Optional JSON, e.g. {"site": "ward-3", "view": "PA"}'


def _metadata(raw: str | None) -> StudyMetadata:
    if not raw:
        return StudyMetadata()
    try:
        return StudyMetadata.model_validate(json.loads(raw))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise ApiError(
            422,
            "invalid_metadata",
            f"metadata must be a JSON object with site/view/"
            f"study_uid strings: {str(exc).splitlines()[0]}",
        ) from exc


async def _read(state: ServiceState, upload: UploadFile) -> tuple[bytes, Image]:
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"{upload.filename}: content type {content_type!r} is not an image; send "
            "PNG, JPEG or DICOM",
        )
    limit = state.settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(
            413, "upload_too_large", f"{upload.filename}: upload exceeds {limit:,} bytes"
        )
    image = await asyncio.to_thread(
        inference.decode, data, upload.filename or "upload", state.settings.max_image_pixels
    )
    return data, image


async def _predict(
    state: ServiceState,
    key: ApiKeyPublic,
    items: list[tuple[bytes, Image]],
    meta: StudyMetadata,
    started: float,
) -> list[PredictionOut]:
    """Route each study (champion, or challenger for a canary share), log it, shadow it.

    Studies of a batch run concurrently so the micro-batcher can merge them into one call.
    """

    async def one(data: bytes, image: Image) -> PredictionOut:
        digest = inference.study_hash(data, meta)
        served, served_by = state.models.route(digest)
        probs, embeddings = await inference.predict_images(served, [image], state.batcher)
        out, record, _ = inference.build(
            served, image, probs[0], embeddings[0], meta, digest, started, served_by
        )
        _log(state, key, record, out.routed_to_review)
        shadow = state.models.shadow()
        if shadow is not None and served_by == "champion":
            task = asyncio.create_task(_shadow(state, key, shadow, image, meta, digest, record.id))
            state.background.add(task)
            task.add_done_callback(state.background.discard)
        return out

    return list(await asyncio.gather(*(one(data, image) for data, image in items)))


def _log(state: ServiceState, key: ApiKeyPublic, record: PredictionRecord, routed: bool) -> None:
    state.sink.remember(record.id, key.name)
    state.writer.submit(record)
    state.metrics.predictions.labels(
        record.model_version, record.predicted_class, record.served_by
    ).inc()
    if routed and record.served_by != "shadow":
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
        probs, embeddings = await inference.predict_images(shadow, [image], state.batcher)
        _, record, _ = inference.build(
            shadow, image, probs[0], embeddings[0], meta, digest, started, "shadow"
        )
        _log(state, key, record.model_copy(update={"shadow_of": primary_id}), False)
    except Exception:  # a shadow failure must never affect clinical traffic
        log.exception("shadow scoring by %s/%s failed", shadow.name, shadow.version)


@router.post(
    "/predict",
    response_model=PredictionOut,
    responses=ERRORS,
    summary="Predict one PNG, JPEG or DICOM radiograph",
)
async def predict(
    state: State,
    key: Predictor,
    file: UploadFile = File(..., description="The image"),
    metadata: str | None = Form(None, description=META_HELP),
) -> PredictionOut:
    started = time.perf_counter()
    meta = _metadata(metadata)
    item = await _read(state, file)
    return (await _predict(state, key, [item], meta, started))[0]


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
    meta = _metadata(metadata)
    items = [await _read(state, f) for f in files]
    return BatchOut(predictions=await _predict(state, key, items, meta, started))


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
    target: str | None = Query(None, description="Class to explain (default: the prediction)"),
) -> ExplainOut:
    started = time.perf_counter()
    meta = _metadata(metadata)
    data, image = await _read(state, file)
    served = state.models.require_champion()
    if target is not None and target not in served.classes:
        raise ApiError(400, "invalid_input", f"target {target!r} is not one of {served.classes}")
    out = (await _predict(state, key, [(data, image)], meta, started))[0]
    if out.served_by == "challenger" and state.models.challenger is not None:
        served = state.models.challenger
    explained = target or out.predicted_class
    heatmap = await asyncio.to_thread(
        gradcam, served.torch_model(), image.pixels, served.size, served.classes.index(explained)
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
