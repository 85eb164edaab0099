"""Review: the queue, a study viewer (window/level, Grad-CAM) and the label form."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from radvigil.dashboard.notes import note_of
from radvigil.dashboard.rendering import PageRoute, render
from radvigil.dashboard.session import PREFIX, Form, SignedIn
from radvigil.errors import InputError, NotFoundError
from radvigil.loop.onboarding import offer, registry_thresholds, site_onboarding
from radvigil.monitoring.onboarding_curve import CurvePoint
from radvigil.service.deps import State
from radvigil.service.explanations import explain_stored_capped
from radvigil.service.schemas import FeedbackIn
from radvigil.store import ReviewQueue
from radvigil.store.review import COUNT_CAP

router = APIRouter(route_class=PageRoute)
RequestId = Path(..., max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
PAGE_SIZE = 25


@router.get("/review")
def queue(
    request: Request,
    state: State,
    viewer: SignedIn,
    site: str | None = Query(None, max_length=100),
    after: str | None = Query(None, max_length=64),
    labelled: str | None = Query(None, max_length=64),
) -> Response:
    viewer.require("label")
    threshold = state.settings.review_confidence
    site = site or None
    reviews = ReviewQueue(state.db)
    onboarding = None
    if site is not None:
        onboarding = site_onboarding(
            reviews, state.settings, site, registry_thresholds(state.models.registry)
        )
    if onboarding is not None:  # a budgeted site: the policy's queue, never over the budget
        ids = [e.record.id for e in onboarding.entries]
        start = ids.index(after) + 1 if after in ids else 0
        page = onboarding.entries[start : start + PAGE_SIZE]
        offer(reviews, onboarding, page)
        items = [e.record for e in page]
        total = len(onboarding.entries)
    else:
        items = reviews.pending(site=site, max_confidence=threshold, limit=PAGE_SIZE, after=after)
        total = reviews.size(site=site, max_confidence=threshold, cap=COUNT_CAP)
    return render(
        request,
        "review_queue.html",
        viewer,
        items=items,
        total=total,
        cap=COUNT_CAP,
        onboarding=onboarding,
        curve_points=curve_points(onboarding.curve) if onboarding else "",
        choices={e.record.id: e.choice for e in onboarding.entries} if onboarding else {},
        site=site,
        after=after,
        next_after=items[-1].id if len(items) == PAGE_SIZE else None,
        threshold=threshold,
        labelled=labelled,
    )


def curve_points(curve: list[CurvePoint]) -> str:
    """SVG polyline points of specificity against labels (a 290 x 100 plot at (20, 10))."""
    known = [p for p in curve if p.specificity.value is not None]
    if not known:
        return ""
    most = max(p.labels for p in known) or 1
    return " ".join(
        f"{20 + 290 * p.labels / most:.1f},{110 - 100 * (p.specificity.value or 0.0):.1f}"
        for p in known
    )


@router.get("/review/{request_id}")
def study(request: Request, state: State, viewer: SignedIn, request_id: str = RequestId):
    viewer.require("label")
    record = state.predictions.get(request_id, with_image=True)
    labels = state.feedback.list(prediction_id=request_id, limit=None)
    return render(
        request,
        "review_study.html",
        viewer,
        record=record,
        has_image=bool(record.review_image),
        classes=list(record.probabilities),
        labels=labels,
        note=note_of(state, request_id),
    )


@router.get("/review/{request_id}/image.png")
def image(state: State, viewer: SignedIn, request_id: str = RequestId) -> Response:
    viewer.require("label")
    record = state.predictions.get(request_id, with_image=True)
    if not record.review_image:
        raise NotFoundError(f"no stored image for {request_id!r}")
    return Response(
        record.review_image,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=300"},
    )


@router.get("/review/{request_id}/explain.png")
async def explanation(
    state: State,
    viewer: SignedIn,
    request_id: str = RequestId,
    target: str | None = Query(None, max_length=100),
) -> Response:
    viewer.require("label")
    png = await explain_stored_capped(state, viewer.key, request_id, target)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.post("/review/{request_id}/label")
def label(state: State, viewer: SignedIn, form: Form, request_id: str = RequestId) -> Response:
    viewer.require("label")
    chosen = form.get("label", "").strip()
    if not chosen:
        raise InputError("choose a label before saving")
    comment = form.get("comment", "").strip() or None
    try:
        body = FeedbackIn(prediction_id=request_id, label=chosen, comment=comment)
    except ValidationError as exc:
        raise InputError(f"the label form is invalid: {exc.errors()[0]['msg']}") from exc
    state.label(body.prediction_id, body.label, viewer.name, body.comment)
    return RedirectResponse(f"{PREFIX}/review?labelled={request_id}", status_code=303)
