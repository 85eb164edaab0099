"""The registry of image QC checks and their thresholds (:class:`QCConfig`).

A check sees one row of statistics per item plus the duplicate groups and yields
``(path, message)`` for each item it flags; its registered severity says whether
``--exclude`` drops the item (``fail``) or only reports it (``warn``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radvigil.data.duplicates import HASH_SIZE
from radvigil.data.manifest import SPLITS, leakage_groups
from radvigil.data.qc_result import DuplicateGroup, Severity
from radvigil.errors import ConfigError


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


def _too_small(ctx: QCContext) -> Iterator[Finding]:
    for row in ctx.readable.itertuples():
        if min(row.width, row.height) < ctx.config.min_side:
            yield row.path, f"{row.width}x{row.height} px, shorter side < {ctx.config.min_side}"


def _aspect_ratio(ctx: QCContext) -> Iterator[Finding]:
    for row in ctx.readable.itertuples():
        ratio = max(row.width, row.height) / max(1, min(row.width, row.height))
        if ratio > ctx.config.max_aspect_ratio:
            yield row.path, f"aspect ratio {ratio:.2f}:1 > {ctx.config.max_aspect_ratio}:1"


def _low_contrast(ctx: QCContext) -> Iterator[Finding]:
    for row in ctx.readable.itertuples():
        if row.std < ctx.config.min_std:
            yield row.path, f"pixel std {row.std:.1f} < {ctx.config.min_std}"


def _exposure(ctx: QCContext) -> Iterator[Finding]:
    limit = ctx.config.max_clipped_fraction
    for row in ctx.readable.itertuples():
        if row.dark_fraction > limit:
            yield row.path, f"{row.dark_fraction:.0%} of pixels clipped to black (> {limit:.0%})"
        elif row.bright_fraction > limit:
            yield row.path, f"{row.bright_fraction:.0%} of pixels clipped to white (> {limit:.0%})"


def _not_radiograph(ctx: QCContext) -> Iterator[Finding]:
    for row in ctx.readable.itertuples():
        if row.colorfulness > ctx.config.max_colorfulness:
            yield (
                row.path,
                (
                    f"colour image (channel difference {row.colorfulness:.1f} > "
                    f"{ctx.config.max_colorfulness}): a photo, not a radiograph"
                ),
            )


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
            _too_small,
            "Too few pixels to show lung detail.",
        ),
        CheckSpec(
            "aspect_ratio",
            "fail",
            lambda c: f"long/short side > {c.max_aspect_ratio}",
            _aspect_ratio,
            "A strip or a crop, not a chest film.",
        ),
        CheckSpec(
            "low_contrast",
            "warn",
            lambda c: f"pixel std < {c.min_std}",
            _low_contrast,
            "Flat image; real but dim radiographs fall here too, so only a warning.",
        ),
        CheckSpec(
            "exposure",
            "fail",
            lambda c: f"> {c.max_clipped_fraction:.0%} pixels within {c.clip_margin} of 0 or 255",
            _exposure,
            "Burnt-out or blank film: most pixels carry no information.",
        ),
        CheckSpec(
            "not_radiograph",
            "fail",
            lambda c: f"colourfulness > {c.max_colorfulness}",
            _not_radiograph,
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
    if not path.is_file():
        raise ConfigError(f"QC config {path} does not exist")
    try:
        return QCConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
