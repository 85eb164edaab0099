"""Real model outputs for the evaluation tests: logistic regressions on real chest X-rays.

Fitted once per test session (``lru_cache``). The binary set is PneumoniaMNIST (28x28 Kermany);
the three-class set joins paediatric Kermany images (normal, pneumonia) with adult Sakha-TB
images (normal, tuberculosis), a real source/label confound.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class Predictions:
    classes: list[str]
    findings: list[str]
    y_val: np.ndarray
    p_val: np.ndarray
    y_test: np.ndarray
    p_test: np.ndarray
    frame: pd.DataFrame | None = None
    paths: list[Path] | None = None


def _fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    # One BLAS thread: the CI machine's cores are shared, and oversubscription is 20x slower.
    with threadpool_limits(1):
        return LogisticRegression(C=0.01, max_iter=200).fit(x, y)


@lru_cache
def pneumonia_binary(shared_data: Path) -> Predictions:
    """Normal vs pneumonia: 2,428 training, 270 validation and 468 test images."""
    data = np.load(shared_data / "medmnist" / "pneumoniamnist_balanced_28.npz")
    classes = np.array(["normal", "pneumonia"])

    def features(split: str) -> np.ndarray:
        images = data[f"{split}_images"]
        return images.reshape(len(images), -1) / 255.0

    model = _fit(features("train"), data["train_labels"].ravel())
    return Predictions(
        classes=list(classes),
        findings=["pneumonia"],
        y_val=classes[data["val_labels"].ravel()],
        p_val=model.predict_proba(features("val")),
        y_test=classes[data["test_labels"].ravel()],
        p_test=model.predict_proba(features("test")),
    )


@lru_cache
def chest_three_class(shared_data: Path) -> Predictions:
    """Normal / pneumonia / tuberculosis from two sources, with the manifest as metadata."""
    manifest = pd.read_csv(shared_data / "cxr" / "manifest.csv", dtype=str, keep_default_na=False)
    sources = {"kermany_guangzhou_pediatric_cxr": 150, "sakha_tb_datacamp_subset": 150}
    parts = []
    for source, per_label in sources.items():
        rows = manifest[manifest["source_dataset"] == source]
        shuffled = rows.sample(frac=1.0, random_state=0)
        parts.append(shuffled.groupby(["split", "label"]).head(per_label))
    frame = pd.concat(parts).reset_index(drop=True)
    paths = [shared_data / p for p in frame["path"]]
    x = np.stack([_small(p) for p in paths])
    classes = ["normal", "pneumonia", "tuberculosis"]
    y = frame["label"].to_numpy()
    split = frame["split"].to_numpy()
    model = _fit(x[split == "train"], y[split == "train"])
    assert list(model.classes_) == classes
    test = split == "test"
    return Predictions(
        classes=classes,
        findings=["pneumonia", "tuberculosis"],
        y_val=y[split == "val"],
        p_val=model.predict_proba(x[split == "val"]),
        y_test=y[test],
        p_test=model.predict_proba(x[test]),
        frame=frame[test].reset_index(drop=True),
        paths=[p for p, t in zip(paths, test, strict=True) if t],
    )


def _small(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("L", (56, 56))
        return np.asarray(image.convert("L").resize((28, 28)), dtype=float).ravel() / 255.0
