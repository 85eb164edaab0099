"""What the service is serving."""

from __future__ import annotations

from fastapi import APIRouter

from radvigil.service.deps import Reader, State
from radvigil.service.lifecycle import ServedModel
from radvigil.service.schemas import ModelOut, ModelsOut

router = APIRouter(prefix="/v1", tags=["models"])


def model_out(served: ServedModel) -> ModelOut:
    card = served.card
    return ModelOut(
        name=served.name,
        version=served.version,
        alias=served.alias,
        task=card.task.name,
        labels=served.classes,
        findings=served.findings,
        thresholds=served.thresholds,
        site_thresholds=served.site_thresholds,
        temperature=card.temperature,
        input_size=served.size,
        training_data_version=card.training_data_version,
        loaded_at=served.loaded_at,
        precision=served.loaded.precision,
        precision_note=served.precision_note,
    )


@router.get("/model", response_model=ModelsOut, summary="Champion and challenger being served")
def current_model(state: State, _: Reader) -> ModelsOut:
    champion = state.models.require_champion()
    challenger = state.models.challenger
    return ModelsOut(
        champion=model_out(champion),
        challenger=model_out(challenger) if challenger else None,
        registry_conflict=state.models.registry_conflict,
    )
