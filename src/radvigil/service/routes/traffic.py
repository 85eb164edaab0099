"""Traffic and latency over time, from the stored predictions."""

from __future__ import annotations

from fastapi import APIRouter, Query

from radvigil.service.deps import Reader, State
from radvigil.service.traffic import NICE_BUCKETS, TrafficOut, traffic

router = APIRouter(prefix="/v1", tags=["traffic"])


@router.get(
    "/traffic",
    response_model=TrafficOut,
    summary="Answered predictions per time bucket with latency percentiles (p50/p95/p99)",
)
def get_traffic(
    state: State,
    _: Reader,
    hours: float = Query(24.0, gt=0, le=24 * 31, description="How far back to look"),
    bucket_seconds: int | None = Query(
        None, ge=NICE_BUCKETS[0], le=NICE_BUCKETS[-1], description="Default: about 30 buckets"
    ),
) -> TrafficOut:
    return traffic(state.predictions, hours=hours, bucket_seconds=bucket_seconds)
