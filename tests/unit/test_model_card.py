"""The model card as callers get it: a typed ModelCard, with its thresholds handed out as a copy."""

from __future__ import annotations

import pytest

from radvigil.errors import ModelError
from radvigil.registry import LoadedModel
from tests.helpers import small_card


def test_operating_thresholds_are_a_copy_the_card_does_not_share() -> None:
    card = small_card(thresholds={"pneumonia": 0.375})
    cuts = card.operating_thresholds()
    assert cuts == {"pneumonia": 0.375}
    cuts["pneumonia"] = 0.9
    assert card.thresholds == {"pneumonia": 0.375}


def test_an_imported_card_has_no_int8_graph(tmp_path) -> None:
    trained = LoadedModel("m", "1", "r", tmp_path / "model.onnx", small_card(), tmp_path, None)
    with pytest.raises(ModelError, match="train it with quantize: true"):
        trained.at_precision("int8")
    imported = LoadedModel(
        "m", "2", "r", tmp_path / "model.onnx", small_card(imported=True), tmp_path, None
    )
    with pytest.raises(ModelError, match="imported versions are served in fp32 only"):
        imported.at_precision("int8")
