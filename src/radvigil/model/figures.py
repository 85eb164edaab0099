"""Training figures logged with every run: learning curves and the validation confusion matrix."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay


def learning_curves(history: list[dict[str, float]]):
    """Train loss and validation macro-F1 / finding sensitivity per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o")
    left.set(title="training loss", xlabel="epoch")
    for key in ("macro_f1", "finding_sensitivity", "accuracy"):
        right.plot(epochs, [h[key] for h in history], marker="o", label=key)
    right.set(title="validation", xlabel="epoch", ylim=(0, 1.02))
    right.legend()
    fig.tight_layout()
    return fig


def confusion(targets: np.ndarray, predicted: np.ndarray, classes: list[str], title: str):
    fig, ax = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(
        targets,
        predicted,
        labels=list(range(len(classes))),
        display_labels=classes,
        ax=ax,
        colorbar=False,
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig
