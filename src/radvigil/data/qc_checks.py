"""The registry of image QC checks and their thresholds (:class:`QCConfig`).

A check sees one row of statistics per item plus the duplicate groups and yields
``(path, message)`` for each item it flags; its registered severity says whether
``--exclude`` drops the item (``fail``) or only reports it (``warn``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from radvigil.data.duplicates import HASH_SIZE
from radvigil.data.manifest import SPLITS, leakage_groups
from radvigil.data.qc_result import DuplicateGroup, Severity
from radvigil.errors import ConfigError
from radvigil.yaml_files import load_yaml_model


class QCConfig(BaseModel):
    """Thresholds of the checks; the defaults are what ``radvigil data validate`` uses."""

    model_config = ConfigDict(extra="forbid")

    checks: list[str] | None = Field(None, description="Checks to run; all registered if None.")
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="Override a check's severity, e.g. low_contrast: fail."
    )
    min_side: int = Field(100, ge=1, description="Shorter image side below this (px) fails.")
    max_aspect_ratio: float = Field(3.0, ge=1, description="Long/short side above this fails.")
    min_std: float = Field(40.0, ge=0, description="Pixel std (0-255) below this is low contrast.")
    clip_margin: int = Field(3, ge=0, le=127, description="Pixels <= m or >= 255-m are clipped.")
    max_clipped_fraction: float = Field(
        0.4, gt=0, le=1, description="Share of clipped pixels (at either end) above this fails."
    )
    max_colorfulness: float = Field(
        8.0, ge=0, description="Mean channel difference above this: a colour photo, not an X-ray."
    )
    near_duplicate_bits: int = Field(
        20, ge=0, le=HASH_SIZE * HASH_SIZE, description="Max Hamming distance of 256-bit phashes."
    )

    @model_validator(mode="after")
    def _known_checks(self) -> QCConfig:
        for name in [*(self.checks or []), *self.severity]:
            get_check(name)
        return self


@dataclass(frozen=True)
class QCContext:
    """What checks see: one row of statistics per item, duplicate groups, and the config."""

    stats: pd.DataFrame
    groups: list[DuplicateGroup]
    config: QCConfig

    @property
    def readable(self) -> pd.DataFrame:
        return self.stats[self.stats["error"] == ""]


Finding = tuple[str, str]  # (path, message)


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: default severity, the threshold it applies, and the function."""

    name: str
    severity: Severity
    threshold: Callable[[QCConfig], str]
    run: Callable[[QCContext], Iterable[Finding]]
    description: str


def _unreadable(ctx: QCContext) -> Iterator[Finding]:
    bad = ctx.stats[ctx.stats["error"] != ""]
    yield from zip(bad["path"], bad["error"], strict=True)


def pixel_stats(
    pixels: np.ndarray, colorfulness: float, config: QCConfig, std: float | None = None
) -> dict[str, float]:
    """The statistics the per-image checks read: size, contrast, clipping at each end, colour.

    ``std`` may be passed when already known (the service has it from its histogram).
    """
    margin = config.clip_margin
    return {
        "width": pixels.shape[1],
        "height": pixels.shape[0],
        "std": float(pixels.std()) if std is None else std,
        "dark_fraction": float(np.count_nonzero(pixels <= margin)) / pixels.size,
        "bright_fraction": float(np.count_nonzero(pixels >= 255 - margin)) / pixels.size,
        "colorfulness": float(colorfulness),
    }


def image_issues(stats: Mapping[str, Any], config: QCConfig) -> dict[str, str]:
    """One image's per-image QC failures as ``{check: message}``, from :func:`pixel_stats`.

    ``radvigil data validate`` applies it to every row of a dataset and the service to every
    prediction, so both flag the same images, with the same thresholds and words.
    """
    issues = {}
    width, height = int(stats["width"]), int(stats["height"])
    if min(width, height) < config.min_side:
        issues["too_small"] = f"{width}x{height} px, shorter side < {config.min_side}"
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > config.max_aspect_ratio:
        issues["aspect_ratio"] = f"aspect ratio {ratio:.2f}:1 > {config.max_aspect_ratio}:1"
    if stats["std"] < config.min_std:
        issues["low_contrast"] = f"pixel std {stats['std']:.1f} < {config.min_std}"
    limit = config.max_clipped_fraction
    if stats["dark_fraction"] > limit:
        issues["exposure"] = (
            f"{stats['dark_fraction']:.0%} of pixels clipped to black (> {limit:.0%})"
        )
    elif stats["bright_fraction"] > limit:
        issues["exposure"] = (
            f"{stats['bright_fraction']:.0%} of pixels clipped to white (> {limit:.0%})"
        )
    if stats["colorfulness"] > config.max_colorfulness:
        issues["not_radiograph"] = (
            f"colour image (channel difference {stats['colorfulness']:.1f} > "
            f"{config.max_colorfulness}): a photo, not a radiograph"
        )
    return issues


def _per_image(name: str) -> Callable[[QCContext], Iterator[Finding]]:
    """The dataset check for one of :func:`image_issues`' checks."""

    def run(ctx: QCContext) -> Iterator[Finding]:
        for row in ctx.readable.to_dict("records"):
            message = image_issues(row, ctx.config).get(name)
            if message:
                yield row["path"], message

    return run


def _split_order(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _extra_copies(group: DuplicateGroup) -> Iterator[tuple[str, str]]:
    """(path, first path) for every member after the first of its split."""
    first: dict[str, str] = {}
    for path, split in zip(group.paths, group.splits, strict=True):
        if split in first:
            yield path, first[split]
        else:
            first[split] = path


def _exact_duplicate(ctx: QCContext) -> Iterator[Finding]:
    for group in ctx.groups:
        if group.kind == "exact":
            for path, kept in _extra_copies(group):
                yield path, f"same bytes as {kept} (same split)"


def _near_duplicate(ctx: QCContext) -> Iterator[Finding]:
    digest = dict(zip(ctx.stats["path"], ctx.stats["sha256"], strict=True))
    for group in ctx.groups:
        if group.kind == "near":
            for path, kept in _extra_copies(group):
                if digest[path] != digest[kept]:
                    yield path, f"near-duplicate of {kept} (same split)"


def _leakage(ctx: QCContext) -> Iterator[Finding]:
    for group in ctx.groups:
        if not group.crosses_splits:
            continue
        home = min(group.splits, key=_split_order)
        anchor = group.paths[group.splits.index(home)]
        for path, split in zip(group.paths, group.splits, strict=True):
            if split != home:
                yield path, f"{group.kind} duplicate of {home} item {anchor} in split {split}"


def _patient_overlap(ctx: QCContext) -> Iterator[Finding]:
    patients = set(leakage_groups(ctx.stats))
    for row in ctx.stats.itertuples():
        if row.patient_id in patients:
            yield row.path, f"patient {row.patient_id} has images in more than one split"


CHECKS: dict[str, CheckSpec] = {
    spec.name: spec
    for spec in (
        CheckSpec(
            "unreadable",
            "fail",
            lambda c: "cannot read or decode; sha256 differs",
            _unreadable,
            "The file cannot be used at all.",
        ),
        CheckSpec(
            "too_small",
            "fail",
            lambda c: f"shorter side < {c.min_side} px",
            _per_image("too_small"),
            "Too few pixels to show lung detail.",
        ),
        CheckSpec(
            "aspect_ratio",
            "fail",
            lambda c: f"long/short side > {c.max_aspect_ratio}",
            _per_image("aspect_ratio"),
            "A strip or a crop, not a chest film.",
        ),
        CheckSpec(
            "low_contrast",
            "warn",
            lambda c: f"pixel std < {c.min_std}",
            _per_image("low_contrast"),
            "Flat image; real but dim radiographs fall here too, so only a warning.",
        ),
        CheckSpec(
            "exposure",
            "fail",
            lambda c: f"> {c.max_clipped_fraction:.0%} pixels within {c.clip_margin} of 0 or 255",
            _per_image("exposure"),
            "Burnt-out or blank film: most pixels carry no information.",
        ),
        CheckSpec(
            "not_radiograph",
            "fail",
            lambda c: f"colourfulness > {c.max_colorfulness}",
            _per_image("not_radiograph"),
            "A colour photo or screenshot, not a grayscale radiograph.",
        ),
        CheckSpec(
            "exact_duplicate",
            "warn",
            lambda c: "same sha256, same split (first copy kept)",
            _exact_duplicate,
            "Extra copies weigh an image twice; one copy may stay.",
        ),
        CheckSpec(
            "near_duplicate",
            "warn",
            lambda c: f"phash-256 within {c.near_duplicate_bits} bits, same split",
            _near_duplicate,
            "Re-encoded or resized copies of one picture.",
        ),
        CheckSpec(
            "leakage",
            "fail",
            lambda c: "duplicate group spans splits (copies after the first split)",
            _leakage,
            "The same picture in training and evaluation inflates metrics.",
        ),
        CheckSpec(
            "patient_overlap",
            "warn",
            lambda c: "patient_id in more than one split",
            _patient_overlap,
            "Different images of one patient across splits; which to drop is a human call.",
        ),
    )
}


def get_check(name: str) -> CheckSpec:
    """The registered check called ``name``; the error lists the valid names."""
    try:
        return CHECKS[name]
    except KeyError:
        raise ConfigError(f"unknown QC check {name!r}; valid checks: {sorted(CHECKS)}") from None


def load_qc_config(path: Path) -> QCConfig:
    """Read QC thresholds from YAML; any problem is one ConfigError naming the field."""
    return load_yaml_model(path, QCConfig, "QC config")
