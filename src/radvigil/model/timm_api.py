"""The part of timm's model API radvigil calls, as a type the checker can see.

timm models share no base class beyond ``nn.Module``, whose ``__getattr__`` makes every
attribute ``Tensor | Module`` to a type checker; this protocol names what we rely on.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch
from torch import nn


class TimmModel(Protocol):
    """A timm classification model: features, pooled head, classifier and parameter groups."""

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...

    def get_classifier(self) -> nn.Module: ...

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]: ...


def timm_api(backbone: nn.Module) -> TimmModel:
    """``backbone`` seen through the timm API (it is a timm model by construction)."""
    return cast(TimmModel, backbone)
