"""Grad-CAM (Selvaraju et al. 2017) on the last feature map of a classifier, as a heatmap."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from radvigil.errors import ModelError
from radvigil.model.network import Classifier
from radvigil.model.preprocess import normalise, resize


def gradcam(model: Classifier, pixels: np.ndarray, size: int, class_index: int) -> np.ndarray:
    """Heatmap in [0, 1] with the shape of ``pixels`` for ``class_index``.

    Grad-CAM weights each channel of the last feature map by the mean gradient of the class
    logit, keeps the positive evidence, and upsamples to the original image size.
    """
    model.eval()
    x = torch.from_numpy(normalise(resize(pixels, size))[None, None])
    with torch.enable_grad():
        features = model.api.forward_features(x)
        features.retain_grad()
        embedding = model.api.forward_head(features, pre_logits=True)
        logits = model.api.get_classifier()(embedding)
        model.zero_grad(set_to_none=True)
        logits[0, class_index].backward()
    if features.grad is None:
        raise ModelError("Grad-CAM got no gradient for the last feature map")
    grads = features.grad[0]
    weights = grads.mean(dim=(1, 2), keepdim=True)
    cam = torch.relu((weights * features[0]).sum(dim=0)).detach().numpy().astype(np.float32)
    cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    if cam.max() > 0:
        cam = cam / cam.max()
    return cv2.resize(cam, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """An RGB uint8 image: the radiograph with the heatmap in the JET colour map on top."""
    colour = cv2.applyColorMap((np.clip(heatmap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    base = np.repeat(pixels[..., None], 3, axis=2).astype(np.float32)
    mixed = base * (1 - alpha * heatmap[..., None]) + colour * (alpha * heatmap[..., None])
    return np.clip(mixed, 0, 255).astype(np.uint8)
