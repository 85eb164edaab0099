"""The invariance penalty between clean and processed views (``consistency``, issue #33)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from radvigil.model.config import TrainConfig
from radvigil.model.dataset import ArraySet
from radvigil.model.network import build_classifier
from radvigil.model.train import Silent, optimisation, train_epoch, training_loss


def test_the_penalty_is_the_mean_squared_logit_gap_on_top_of_the_clean_loss() -> None:
    ce = nn.CrossEntropyLoss()
    clean = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    y = torch.tensor([0, 1])
    assert training_loss(ce, clean, y, 0.0) == pytest.approx(ce(clean, y).item())
    same = torch.cat([clean, clean])
    assert training_loss(ce, same, y, 5.0).item() == pytest.approx(ce(clean, y).item())
    shifted = torch.cat([clean, clean + torch.tensor([[0.0, 1.0], [0.0, 1.0]])])
    # each processed view moved one logit by 1: squared gap 1 per image, over 2 logits
    assert training_loss(ce, shifted, y, 4.0).item() == pytest.approx(
        ce(clean, y).item() + 4.0 * 0.5
    )


def _step_sizes(consistency: float) -> tuple[list[int], float]:
    rng = np.random.default_rng(0)
    images = rng.integers(30, 220, size=(6, 32, 32), dtype=np.uint8)
    data = ArraySet(images, np.array([0, 1] * 3), pd.DataFrame({"path": list("abcdef")}))
    cfg = TrainConfig(backbone="resnet18", epochs=1, batch_size=6, consistency=consistency)
    torch.manual_seed(0)
    model = build_classifier("resnet18", 2)
    seen: list[int] = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(len(args[0])))
    opt = optimisation(cfg, model, data.targets, 2, 1, torch.device("cpu"))
    augment_rng = np.random.default_rng(1)
    train_epoch(model, opt, data, np.arange(6), 6, cfg, augment_rng, Silent())
    return seen, augment_rng.random()


def test_each_step_also_sees_a_processed_copy_and_off_draws_nothing_extra() -> None:
    off, after_off = _step_sizes(0.0)
    on, after_on = _step_sizes(1.0)
    assert off == [6] and on == [12]
    assert after_off != after_on  # the processed views draw from the rng only when on
    assert _step_sizes(0.0)[1] == after_off  # so a config without it replays exactly
