"""Backbones from timm: 1-channel input, no downloads, optional pretrained weights."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models import group_parameters
from torch import nn

from radvigil.errors import ModelError
from radvigil.model.timm_api import TimmModel, timm_api
from radvigil.model.weights import WeightsRecord, load_weights


class Classifier(nn.Module):
    """A timm backbone whose forward returns logits and the pooled (pre-logits) embedding."""

    def __init__(self, backbone: nn.Module, weights: WeightsRecord | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.weights_record = weights

    @property
    def api(self) -> TimmModel:
        """The backbone through timm's API."""
        return timm_api(self.backbone)

    @property
    def embedding_dim(self) -> int:
        return int(self.api.num_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.api.forward_features(x)
        embedding = self.api.forward_head(features, pre_logits=True)
        logits = self.api.get_classifier()(embedding)
        return logits, embedding

    def train(self, mode: bool = True) -> Classifier:
        """Like nn.Module.train, but BatchNorm layers whose parameters are frozen stay in eval.

        A frozen stage then computes exactly its pretrained features (running statistics, not
        batch statistics), which is what progressive unfreezing assumes.
        """
        super().train(mode)
        if mode:
            for module in self.modules():
                params = list(module.parameters(recurse=False))
                is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
                if is_norm and params and not any(p.requires_grad for p in params):
                    module.eval()
        return self

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.api.get_classifier().parameters())

    def depth_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the head down: [head, top stage, ..., stem] (timm's coarse groups).

        Progressive unfreezing opens these from the front; discriminative learning rates
        shrink along them.
        """
        head = {id(p) for p in self.head_parameters()}
        named = dict(self.backbone.named_parameters())
        groups = group_parameters(self.backbone, self.api.group_matcher(coarse=True))
        body = [
            [named[n] for n in names if id(named[n]) not in head]
            for _, names in sorted(groups.items(), reverse=True)
        ]
        return [self.head_parameters(), *[g for g in body if g]]


def build_classifier(name: str, num_classes: int, weights: str | Path | None = None) -> Classifier:
    """Create ``name`` with ``pretrained=False`` and 1 input channel; load ``weights`` if given.

    ``weights`` is a registered source key (see :mod:`radvigil.model.weights`) or a local file.
    """
    if not timm.is_model(name):
        raise ModelError(f"unknown backbone {name!r}")
    backbone = timm.create_model(name, pretrained=False, in_chans=1, num_classes=num_classes)
    record = load_weights(backbone, weights, name) if weights is not None else None
    return Classifier(backbone, record)


def channels_last(model: Classifier) -> Classifier:
    """``model`` with its weights in channels-last memory layout, in place, for CPU work.

    oneDNN's convolutions, the depthwise ones of EfficientNet-Lite0 above all, run about 1.5x
    faster on CPU in this layout (a training step of 32 images at 144 px: 0.69 s vs 1.00 s on
    2 cores); the maths is the same, only float rounding differs. Export converts back.
    """
    return model.to(memory_format=torch.channels_last)
