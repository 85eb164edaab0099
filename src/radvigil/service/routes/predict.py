"""Predictions: one image, a batch, or one image with a Grad-CAM explanation."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from PIL import Image as PILImage
from pydantic import ValidationError

from radvigil.model.gradcam import overlay
from radvigil.service import predicting
from radvigil.service.deps import Predictor, State
from radvigil.service.errors import ApiError
from radvigil.service.explanations import explain_slot
from radvigil.service.schemas import BatchOut, ExplainOut, PredictionOut, StudyMetadata
from radvigil.service.state import ServiceState

router = APIRouter(prefix="/v1", tags=["predict"])
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
ERRORS: dict[int | str, dict[str, Any]] = {
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
    return (await predicting.predict_items(state, key.name, [item], meta, started))[0][0]


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
    outs = await predicting.predict_items(state, key.name, items, meta, started)
    return BatchOut(predictions=[out for out, _ in outs])


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
        out, scored = (await predicting.predict_items(state, key.name, [item], meta, started))[0]
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
