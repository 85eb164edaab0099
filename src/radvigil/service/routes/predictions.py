"""Reading stored predictions back."""

from __future__ import annotations

from fastapi import APIRouter, Path

from radvigil.service.deps import Reader, State
from radvigil.store import PredictionRecord

router = APIRouter(prefix="/v1", tags=["predictions"])


@router.get(
    "/predictions/{request_id}",
    response_model=PredictionRecord,
    response_model_exclude={"review_image", "embedding"},
    summary="A stored prediction (no image, no embedding)",
)
def get_prediction(
    state: State,
    _: Reader,
    request_id: str = Path(..., max_length=64, pattern=r"^[A-Za-z0-9._:-]+$"),
) -> PredictionRecord:
    return state.predictions.get(request_id)
