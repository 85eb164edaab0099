"""bench/transfer_variants.py: the weight average and the per-epoch snapshots it judges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from bench import transfer_variants

from radvigil.data.io import read_image
from radvigil.model import train as training
from radvigil.model.dataset import ArraySet
from radvigil.model.preprocess import resize
from radvigil.task import load_task
from tests.helpers import tiny_config


def _real_set(bundled: Path, per_class: int, size: int) -> ArraySet:
    """Real bundled validation films, ``per_class`` of each label, resized."""
    task = load_task("chest-pneumonia")
    images, targets = [], []
    for label in ("normal", "pneumonia"):
        for path in sorted((bundled / "kermany" / "val" / label).glob("*.jpg"))[:per_class]:
            images.append(resize(read_image(path).pixels, size))
            targets.append(task.class_index(label))
    return ArraySet(np.stack(images), np.array(targets), pd.DataFrame({"i": range(len(targets))}))


@pytest.mark.slow  # CPU-heavy: left out of `make check`, run by `make test`
def test_snapshots_one_per_epoch_and_the_kept_one_is_the_trained_model(bundled: Path) -> None:
    task = load_task("chest-pneumonia")
    data = _real_set(bundled, 12, 64)
    sets = {"train": data, "val": data}
    model, snapshots, kept = transfer_variants.train_with_snapshots(
        tiny_config(epochs=3, patience=5), task, sets
    )
    assert len(snapshots) == 3 and 1 <= kept <= 3
    assert training.EarlyStopping.__name__ == "EarlyStopping"  # the recording subclass is undone
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[kept - 1][k]) for k in state)
    assert not all(torch.equal(snapshots[0][k], snapshots[-1][k]) for k in state)
