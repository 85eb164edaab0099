"""Backbones from timm, built for 1-channel input with no downloads, plus an optional local file."""

from __future__ import annotations

import pickle
from pathlib import Path

import timm
import torch
from torch import nn

from radvigil.errors import ModelError


class Classifier(nn.Module):
    """A timm backbone whose forward returns logits and the pooled (pre-logits) embedding."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def embedding_dim(self) -> int:
        return int(self.backbone.num_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone.forward_features(x)
        embedding = self.backbone.forward_head(features, pre_logits=True)
        logits = self.backbone.get_classifier()(embedding)
        return logits, embedding

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.get_classifier().parameters())


def build_classifier(name: str, num_classes: int, weights: Path | None = None) -> Classifier:
    """Create ``name`` with ``pretrained=False`` and 1 input channel; load ``weights`` if given.

    A weights file may hold a plain state dict or ``{"state_dict": ...}``; RGB stems are summed to
    one channel and a classifier head of another size is skipped (the task's head is new).
    """
    if not timm.is_model(name):
        raise ModelError(f"unknown backbone {name!r}")
    backbone = timm.create_model(name, pretrained=False, in_chans=1, num_classes=num_classes)
    if weights is not None:
        _load_weights(backbone, weights)
    return Classifier(backbone)


def _load_weights(backbone: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = backbone.state_dict()
    usable = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("backbone.")
        if key not in own:
            continue
        if value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)
        if value.shape == own[key].shape:
            usable[key] = value
    if not usable:
        raise ModelError(f"weights file {path} has no tensors matching this backbone")
    backbone.load_state_dict(usable, strict=False)
