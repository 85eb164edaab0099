"""Derived dataset versions: a population scenario and/or pixel shifts applied to a parent.

The result records its parent id and every step with its parameters and seed in ``meta``, so
a shifted test set can be rebuilt bit for bit. Shifted images are written as 8-bit PNG.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image as PILImage

from radvigil.data.io import read_image
from radvigil.data.manifest import DatasetVersion, canonical
from radvigil.data.populations import resample_prevalence, subset
from radvigil.data.shifts import Pipeline, apply_shift
from radvigil.errors import DataError

Progress = Callable[[Iterable], Iterable]


def _no_progress(items: Iterable) -> Iterable:
    return items


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing a manifest path that would land outside ``root``.

    Raises:
        DataError: ``relative`` is absolute, has a drive, or climbs out with ``..``.
    """
    candidate = PurePosixPath(relative.replace("\\", "/"))
    target = (root / candidate).resolve()
    if (
        candidate.is_absolute()
        or (candidate.parts and ":" in candidate.parts[0])
        or not target.is_relative_to(root.resolve())
    ):
        raise DataError(f"manifest path {relative!r} escapes the output folder {root}")
    return root / candidate


def derive(
    version: DatasetVersion,
    *,
    seed: int,
    split: str | None = None,
    where: dict[str, str] | None = None,
    prevalence: dict[str, float] | None = None,
    shift: Pipeline | None = None,
    out_root: Path | None = None,
    progress: Progress = _no_progress,
) -> DatasetVersion:
    """Select a population (split, subset, prevalence), then render ``shift`` into ``out_root``.

    Without a shift the result reuses the parent's image files; with one, ``out_root`` is
    required and receives one PNG per item.
    """
    frame = version.split(split).frame if split else version.frame
    if where:
        frame = subset(frame, where)
    if prevalence:
        frame = resample_prevalence(frame, prevalence, seed)
    if frame.empty:
        raise DataError("the selected population has no images")
    derivation: dict[str, Any] = {
        "split": split,
        "where": where or {},
        "prevalence": prevalence or {},
        "shifts": shift.describe() if shift else [],
        "seed": seed,
    }
    meta = {
        "source": {"kind": "shift", "parent_source": version.meta.get("source", {})},
        "derived_from": version.id,
        "derivation": derivation,
    }
    if shift is None or not shift.shifts:
        return DatasetVersion(canonical(frame), version.root, meta)
    if out_root is None:
        raise DataError("rendering shifted images needs an output folder")
    rendered = render(DatasetVersion(frame, version.root), shift, seed, out_root, progress)
    return DatasetVersion(rendered.frame, out_root, meta)


def render(
    version: DatasetVersion,
    shift: Pipeline,
    seed: int,
    out_root: Path,
    progress: Progress = _no_progress,
) -> DatasetVersion:
    """Write ``shift`` of every item as PNG under ``out_root``, keeping the folder layout.

    Each item's generator is seeded by ``seed`` and its path, so the noise an image gets does
    not depend on which other images were selected or in what order.
    """
    frame = version.frame.copy()
    targets = [Path(p).with_suffix(".png").as_posix() for p in frame["path"]]
    if len(set(targets)) != len(targets):
        raise DataError("two images would share one PNG name (same stem, different suffix)")
    destinations = [inside(out_root, target) for target in targets]  # all checked before writing
    digests = []
    for source, destination in progress(list(zip(frame["path"], destinations, strict=True))):
        pixels = read_image(version.root / source, name=source).pixels
        rng_seed = [seed, int.from_bytes(hashlib.sha256(source.encode()).digest()[:8])]
        shifted = apply_shift(pixels, shift, seed=rng_seed)
        data = _png_bytes(shifted)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
        digests.append(hashlib.sha256(data).hexdigest())
    frame["path"] = targets
    frame["sha256"] = digests
    if "bit_depth" in frame.columns:
        frame["bit_depth"] = "8"
    return DatasetVersion(canonical(frame), out_root, version.meta)


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
