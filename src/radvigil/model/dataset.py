"""Turn a dataset version into resized uint8 arrays and integer targets for one task."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion
from radvigil.model.preprocess import resize
from radvigil.task import Task


@dataclass
class ArraySet:
    """Images already resized to the model's input size, their targets and manifest rows."""

    images: np.ndarray  # N x S x S uint8
    targets: np.ndarray  # N int64, indices into task.classes
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.targets)


def load_split(
    version: DatasetVersion,
    split: str,
    task: Task,
    size: int,
    *,
    limit: int | None = None,
    seed: int = 42,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> ArraySet:
    """Decode one split of ``version`` for ``task`` (labels checked against the task)."""
    part = version.split(split).frame
    labels = task.targets(part.to_dict("records"))
    task.check_labels(labels) if split == "train" else _check_known(task, labels)
    if limit is not None and len(part) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(part), limit, replace=False))
        part = part.iloc[keep].reset_index(drop=True)
        labels = [labels[i] for i in keep]
    images = resized_images(version.root, list(part["path"]), size, progress)
    targets = np.array([task.class_index(label) for label in labels], dtype=np.int64)
    return ArraySet(images, targets, part.reset_index(drop=True))


def resized_images(
    root: Path,
    paths: list[str],
    size: int,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> np.ndarray:
    """Decode each of ``paths`` (relative to ``root``) and resize it to ``size`` x ``size``."""
    images = np.empty((len(paths), size, size), dtype=np.uint8)
    for i, path in enumerate(progress(paths)):
        images[i] = resize(read_image(root / path).pixels, size)
    return images


def oversampled(data: ArraySet, repeats: dict[str, int]) -> ArraySet:
    """``data`` with each row of a ``source_dataset`` in ``repeats`` present that many times."""
    if not repeats or "source_dataset" not in data.frame:
        return data
    counts = data.frame["source_dataset"].map(repeats).fillna(1).astype(int).to_numpy()
    if (counts == 1).all():
        return data
    index = np.repeat(np.arange(len(data)), counts)
    return ArraySet(
        data.images[index], data.targets[index], data.frame.iloc[index].reset_index(drop=True)
    )


def _check_known(task: Task, labels: list[str]) -> None:
    unknown = sorted(set(labels) - set(task.classes))
    if unknown:
        task.check_labels(labels)
