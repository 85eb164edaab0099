"""Grad-CAM for a stored review image, by the model version that made the prediction.

A reviewer asks "where did the model look?" about a case already in the queue; running
``/v1/predict/explain`` again would log a second prediction, so this explains the stored,
de-identified pixels instead, without touching the prediction log.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from PIL import Image as PILImage

from radvigil.errors import InputError, NotFoundError
from radvigil.model.gradcam import overlay
from radvigil.service.errors import ApiError
from radvigil.service.lifecycle import ServedModel
from radvigil.service.state import ServiceState
from radvigil.store import ApiKeyPublic


@asynccontextmanager
async def explain_slot(state: ServiceState) -> AsyncIterator[None]:
    """One of ``explain_concurrency`` slots; 429 when ``explain_queue`` callers already wait."""
    if state.explain_slots.locked() and state.explain_waiting >= state.settings.explain_queue:
        raise ApiError(
            429,
            "explain_busy",
            "too many explanations in progress; retry shortly",
            headers={"Retry-After": "2"},
        )
    state.explain_waiting += 1
    try:
        await state.explain_slots.acquire()
    finally:
        state.explain_waiting -= 1
    try:
        yield
    finally:
        state.explain_slots.release()


async def explain_stored_capped(
    state: ServiceState, key: ApiKeyPublic, request_id: str, target: str | None
) -> bytes:
    """:func:`explain_stored` as the API and the dashboard serve it: charged and slotted.

    Costs ``explain_rate_cost`` tokens (the request's first token is already paid) and runs
    in one of the explain slots, the same caps as ``/v1/predict/explain``.
    """
    state.limiter.take(key, state.settings.explain_rate_cost - 1)
    async with explain_slot(state):
        return await asyncio.to_thread(explain_stored, state, request_id, target)


def served_version(state: ServiceState, version: str) -> ServedModel:
    """The loaded champion or challenger with this version (NotFoundError if neither is)."""
    for served in (state.models.champion, state.models.challenger):
        if served is not None and served.version == version:
            return served
    raise NotFoundError(
        f"model version {version} made this prediction but is no longer loaded; "
        "explanations come only from the version that predicted"
    )


def explain_stored(state: ServiceState, request_id: str, target: str | None = None) -> bytes:
    """PNG of the stored review image with the Grad-CAM heatmap of ``target`` on top.

    Raises:
        NotFoundError: no such prediction, no stored image, or its version is not loaded.
        InputError: ``target`` is not a class of the model.
    """
    record = state.predictions.get(request_id, with_image=True)
    if not record.review_image:
        raise NotFoundError(f"no stored image for {request_id!r} to explain")
    served = served_version(state, record.model_version)
    explained = target or record.predicted_class
    if explained not in served.classes:
        raise InputError(f"target {explained!r} is not one of {served.classes}")
    pixels = np.asarray(PILImage.open(io.BytesIO(record.review_image)).convert("L"))
    index = served.classes.index(explained)
    heatmap = served.explain(pixels, index)
    buffer = io.BytesIO()
    PILImage.fromarray(overlay(pixels, heatmap)).save(buffer, format="PNG")
    return buffer.getvalue()
