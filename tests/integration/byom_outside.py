"""An outside chest X-ray classifier built WITHOUT radvigil code: torchvision, PIL, pandas.

It stands in for a vendor's model: its own input size (80 px), RGB input with ImageNet
normalisation, logits under its own output name (``scores``) and its pooled features as a
second output (``features``). Trained briefly on the bundled training images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from PIL import Image

SIZE = 80
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load(bundled: Path, split: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``split`` as ImageNet-normalised RGB tensors, label 1 = pneumonia."""
    frame = pd.read_csv(bundled / "manifest.csv")
    frame = frame[frame["split"] == split].sample(n=n, random_state=seed)
    images = [
        np.asarray(Image.open(bundled / p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
        for p in frame["path"]
    ]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    y = torch.tensor((frame["label"] == "pneumonia").to_numpy(), dtype=torch.long)
    return (x - MEAN) / STD, y


class Outside(torch.nn.Module):
    """A small CNN from torchvision's building blocks: four strided conv-BN-ReLU stages."""

    def __init__(self) -> None:
        super().__init__()
        block = torchvision.ops.Conv2dNormActivation
        self.features = torch.nn.Sequential(
            block(3, 16, stride=2),
            block(16, 32, stride=2),
            block(32, 64, stride=2),
            block(64, 64, stride=2),
        )
        self.head = torch.nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x).mean(dim=(2, 3))
        return self.head(features), features


def train(
    bundled: Path, seed: int, *, epochs: int, n: int, model: Outside | None = None
) -> Outside:
    """Train (or continue training ``model``) on ``n`` bundled training images."""
    torch.manual_seed(seed)
    x, y = load(bundled, "train", n, seed)
    model = model or Outside()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            loss = torch.nn.functional.cross_entropy(model(x[idx])[0], y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def export(model: Outside, path: Path) -> Path:
    """ONNX with a dynamic batch: input ``input_rgb``, outputs ``scores`` and ``features``."""
    program = torch.onnx.export(
        model,
        (torch.zeros(2, 3, SIZE, SIZE),),
        dynamo=True,
        input_names=["input_rgb"],
        output_names=["scores", "features"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
        verbose=False,
    )
    program.save(str(path))
    return path


SPEC = {
    "input": {
        "name": "input_rgb",
        "size": [SIZE, SIZE],
        "channels": 3,
        "scale": 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "layout": "NCHW",
    },
    "output": {"name": "scores", "kind": "logits"},
    "task": "chest-pneumonia",
    "classes": ["normal", "pneumonia"],
    "findings": ["pneumonia"],
    "embedding": {"output": "features"},
}
