"""The review queue and clinicians' labels (feedback)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Response

from radvigil.errors import NotFoundError
from radvigil.loop.onboarding import (
    SiteOnboarding,
    offer,
    registry_thresholds,
    site_onboarding,
)
from radvigil.monitoring.label_selection import Choice
from radvigil.service.deps import Labeller, State
from radvigil.service.explanations import explain_stored_capped
from radvigil.service.schemas import FeedbackIn, LabelBudgetOut, ReviewItem, ReviewQueueOut
from radvigil.store import FeedbackPublic, PredictionRecord, ReviewQueue
from radvigil.store.review import COUNT_CAP

router = APIRouter(prefix="/v1", tags=["review"])
RequestId = Path(..., max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


def _item(record: PredictionRecord, choice: Choice | None = None) -> ReviewItem:
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
        policy=choice.policy if choice else None,
        why=choice.reason if choice else None,
    )


def budget_out(onboarding: SiteOnboarding) -> LabelBudgetOut:
    """The budget part of a budgeted queue's answer."""
    return LabelBudgetOut(
        budget=onboarding.budget,
        period=onboarding.period,
        policy=onboarding.policy,
        audit_share=onboarding.audit_share,
        spent=onboarding.spent,
        audit_spent=onboarding.audit_spent,
        remaining=onboarding.remaining,
    )


@router.get(
    "/review",
    response_model=ReviewQueueOut,
    summary="Cases awaiting a label: a budgeted site's by its selection policy, else drifters "
    "and low-confidence cases, most unusual first",
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
    if site is not None:
        onboarding = site_onboarding(
            queue, state.settings, site, registry_thresholds(state.models.registry)
        )
        if onboarding is not None:  # the policy's queue, never over the budget
            ids = [e.record.id for e in onboarding.entries]
            start = ids.index(after) + 1 if after in ids else 0
            page = onboarding.entries[start : start + limit]
            offer(queue, onboarding, page)
            return ReviewQueueOut(
                total=len(onboarding.entries),
                items=[_item(e.record, e.choice) for e in page],
                next_after=page[-1].record.id if start + limit < len(ids) else None,
                label_budget=budget_out(onboarding),
            )
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
    return state.label(body.prediction_id, body.label, key.name, body.comment)
