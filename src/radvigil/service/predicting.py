"""The one prediction path: route, score, log, audit and shadow a study, whoever sent it.

The HTTP routes (``/v1/predict``, ``/v1/predict/batch``, ``/v1/predict/explain``) and the DICOM
study worker (:mod:`radvigil.pacs.worker`) both call :func:`predict_items` with the same
:class:`~radvigil.service.state.ServiceState`, so a study from a PACS meets the same model, the
same monitoring assessment, review routing, audit trail and prediction store as an upload.
"""

from __future__ import annotations

import asyncio
import logging
import time

from radvigil.data.image import Image
from radvigil.monitoring.review_routing import ReviewPolicy
from radvigil.service import inference
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import PredictionOut, StudyMetadata
from radvigil.service.state import ServiceState
from radvigil.store import PredictionRecord

log = logging.getLogger(__name__)


def _job(
    state: ServiceState, served: ServedModel, data: bytes, filename: str, site: str | None
) -> inference.Job:
    return inference.Job(
        served,
        data,
        filename,
        max_pixels=state.settings.max_image_pixels,
        max_decoded_bytes=state.settings.max_decoded_bytes,
        keep_review_png=state.settings.store_review_images,
        review=review_policy(state),
        keep_unrouted_png=site is not None and site in state.settings.label_budgets,
        site=site,
    )


def review_policy(state: ServiceState) -> ReviewPolicy:
    """The settings' routing of low-confidence and audit-sampled cases to review."""
    return ReviewPolicy(state.settings.review_confidence, state.settings.review_audit_share)


async def predict_items(
    state: ServiceState,
    actor: str,
    items: list[tuple[bytes, str]],
    meta: StudyMetadata,
    started: float,
) -> list[tuple[PredictionOut, inference.Scored]]:
    """Route each study (champion, or challenger for a canary share), log it, shadow it.

    ``actor`` is who asked (an API key's name, or ``dicom:<calling AE>``); the audit log
    records it beside each prediction.

    Studies of a batch go to the micro-batcher together so they share one model call; nothing
    is logged unless every image of the request could be read.
    """
    routed = []
    for data, _ in items:
        digest = inference.study_hash(data, meta, state.settings.resolved_study_hash_key)
        routed.append((digest, *state.models.route(digest)))
    scored = await asyncio.gather(
        *(
            state.batcher.submit(_job(state, served, data, name, meta.site))
            for (data, name), (_, served, _) in zip(items, routed, strict=True)
        ),
        return_exceptions=True,
    )
    results: list[inference.Scored] = []
    for result in scored:
        if isinstance(result, BaseException):
            raise result
        results.append(result)
    outs = []
    shadow = state.models.shadow()
    for result, (digest, served, served_by) in zip(results, routed, strict=True):
        out, record = inference.build(served, result, meta, digest, started, served_by)
        _log(state, actor, record, out.flags.drifter)
        if shadow is not None and served_by == "champion":
            task = asyncio.create_task(
                _shadow(state, actor, shadow, result.image, meta, digest, record.id)
            )
            state.background.add(task)
            task.add_done_callback(state.background.discard)
        outs.append((out, result))
    return outs


def _log(state: ServiceState, actor: str, record: PredictionRecord, drifter: bool) -> None:
    state.sink.remember(record.id, actor)
    state.writer.submit(record)
    state.metrics.predictions.labels(
        record.model_version, record.predicted_class, record.served_by
    ).inc()
    if drifter and record.served_by != "shadow":
        state.metrics.drifters.labels(record.model_version).inc()


async def _shadow(
    state: ServiceState,
    actor: str,
    shadow: ServedModel,
    image: Image,
    meta: StudyMetadata,
    digest: str,
    primary_id: str,
) -> None:
    """Score with the challenger and store the result; never returned to the caller."""
    started = time.perf_counter()
    try:
        job = inference.Job(
            shadow, image=image, keep_review_png=state.settings.store_review_images, site=meta.site
        )
        scored = await state.batcher.submit(job)
        _, record = inference.build(shadow, scored, meta, digest, started, "shadow")
        _log(state, actor, record.model_copy(update={"shadow_of": primary_id}), False)
    except Exception:  # a shadow failure must never affect clinical traffic
        log.exception("shadow scoring by %s/%s failed", shadow.name, shadow.version)
