"""Real data for the monitoring tests: PneumoniaMNIST (28x28 Kermany) pixels and a stand-in model.

The trained network is not part of these tests, so its two outputs are stood in for by simple
models fitted on real pixels: the "embedding" is a 32-component PCA of the training images, the
"probabilities" come from a logistic regression on that embedding, calibrated with isotonic
regression on held-out training data. Shifts are applied to the real pixels with numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from radvigil.monitoring import ReferenceProfile, WindowData, image_stats_frame

CLASSES = ["normal", "pneumonia"]


def _npz() -> Path:
    root = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("RADVIGIL_SHARED_DATA", root.parent / "shared" / "data"))
    return shared / "medmnist" / "pneumoniamnist_balanced_28.npz"


@dataclass(frozen=True)
class StandIn:
    """Real images with labels, and stand-ins for the model's embedding and probabilities."""

    images: np.ndarray  # val + test images, the pool windows and references are drawn from
    labels: np.ndarray
    pca: PCA
    classifier: CalibratedClassifierCV

    def embed(self, images: np.ndarray) -> np.ndarray:
        return self.pca.transform(images.reshape(len(images), -1) / 255.0).astype(np.float32)

    def probs(self, images: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(self.embed(images))

    def window(
        self,
        index: np.ndarray,
        images: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        sites: list[str] | None = None,
    ) -> WindowData:
        """Everything the monitor sees for the pool rows at ``index`` (optionally shifted)."""
        pixels = self.images[index] if images is None else images
        return WindowData(
            embeddings=self.embed(pixels),
            probs=self.probs(pixels),
            labels=self.labels[index] if labels is None else labels,
            stats=image_stats_frame(list(pixels)),
            metadata=pd.DataFrame({"site": sites or ["A"] * len(pixels)}),
        )

    def profile(self, index: np.ndarray, **kwargs: object) -> ReferenceProfile:
        """A reference profile of the pool rows at ``index``."""
        data = self.window(index)
        return ReferenceProfile.build(
            self.embed(self.images[index]),
            data.probs,
            data.labels,
            data.stats,
            data.metadata,
            class_names=CLASSES,
            **kwargs,
        )


@cache
def stand_in() -> StandIn:
    """Fit the stand-in model on the training split; pool the val and test splits."""
    data = np.load(_npz())
    train = data["train_images"]
    pca = PCA(32, random_state=0).fit(train.reshape(len(train), -1) / 255.0)
    x = pca.transform(train.reshape(len(train), -1) / 255.0)
    base = LogisticRegression(max_iter=2000)
    classifier = CalibratedClassifierCV(base, method="isotonic", cv=3)
    classifier.fit(x, data["train_labels"].ravel())
    images = np.concatenate([data["val_images"], data["test_images"]])
    labels = np.concatenate([data["val_labels"], data["test_labels"]]).ravel().astype(np.int64)
    return StandIn(images, labels, pca, classifier)


def split(n_reference: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random (reference, held-out) split of the pool's row indices."""
    order = np.random.default_rng(seed).permutation(len(stand_in().images))
    return order[:n_reference], order[n_reference:]


def brighten(images: np.ndarray, factor: float = 1.2) -> np.ndarray:
    """A +20% (by default) brightness shift of uint8 images, clipped at white."""
    return np.clip(images.astype(np.float64) * factor, 0, 255).astype(np.uint8)
