"""The review queue and clinicians' labels (feedback)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Response

from radvigil.errors import NotFoundError
from radvigil.loop.actions import label_case
from radvigil.service.deps import Labeller, State
from radvigil.service.explanations import explain_stored_capped
from radvigil.service.schemas import FeedbackIn, ReviewItem, ReviewQueueOut
from radvigil.store import FeedbackPublic, PredictionRecord, ReviewQueue
from radvigil.store.review import COUNT_CAP

router = APIRouter(prefix="/v1", tags=["review"])
RequestId = Path(..., max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


def _item(record: PredictionRecord) -> ReviewItem:
    return ReviewItem(
        request_id=record.id,
        created_at=record.created_at,
        model_version=record.model_version,
        predicted_class=record.predicted_class,
        probabilities=record.probabilities,
        confidence=record.confidence,
        ood_score=record.ood_score,
        reasons=record.warnings,
        site=record.site,
        view_position=record.view_position,
        has_image=bool(record.routed_to_review),
    )


@router.get(
    "/review",
    response_model=ReviewQueueOut,
    summary="Drifters and low-confidence cases awaiting a label, most unusual first",
)
def review_queue(
    state: State,
    _: Labeller,
    site: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=500),
    after: str | None = Query(
        None, max_length=64, description="Request id of the previous page's last item."
    ),
) -> ReviewQueueOut:
    queue = ReviewQueue(state.db)
    threshold = state.settings.review_confidence
    items = queue.pending(site=site, max_confidence=threshold, limit=limit, after=after)
    return ReviewQueueOut(
        total=(total := queue.size(site=site, max_confidence=threshold, cap=COUNT_CAP)),
        total_capped=total >= COUNT_CAP,
        items=[_item(r) for r in items],
        next_after=items[-1].id if len(items) == limit else None,
    )


@router.get(
    "/review/{request_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    summary="The stored de-identified pixels of a case routed to review (PNG)",
)
def review_image(state: State, _: Labeller, request_id: str = RequestId) -> Response:
    record = state.predictions.get(request_id, with_image=True)
    if not record.review_image:
        raise NotFoundError(
            f"no stored image for {request_id!r} (images are kept only for "
            "cases routed to review when RADVIGIL_STORE_REVIEW_IMAGES is on)"
        )
    return Response(record.review_image, media_type="image/png")


@router.get(
    "/review/{request_id}/explain",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    summary="Grad-CAM overlay of a stored review image (PNG; no new prediction is logged)",
)
async def review_explain(
    state: State,
    key: Labeller,
    request_id: str = RequestId,
    target: str | None = Query(None, max_length=100, description="Default: the prediction"),
) -> Response:
    png = await explain_stored_capped(state, key, request_id, target)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.post(
    "/feedback",
    response_model=FeedbackPublic,
    status_code=201,
    summary="Label or correct a prediction (reviewer = the API key's name)",
)
def post_feedback(state: State, key: Labeller, body: FeedbackIn) -> FeedbackPublic:
    return label_case(
        state.predictions,
        state.feedback,
        state.audit,
        body.prediction_id,
        body.label,
        key.name,
        body.comment,
        catch_up=lambda: state.writer.flush(timeout=5),  # it may still be in the write queue
    )
