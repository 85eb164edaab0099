"""Pools for the drift benchmark: model outputs and image statistics of shifted real images.

Every scenario is a *pool*: the served model's ONNX outputs (calibrated probabilities, raw
embeddings), the embeddings reduced by the reference profile's PCA with their OOD scores, image
statistics of the pixels the service would see, and labels where the task has them. Pools are
computed once per scenario; the benchmark then samples many windows from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import common
import numpy as np
import pandas as pd

INFER_BATCH = 64


@dataclass
class Pool:
    """One scenario's images as the monitor sees them (aligned rows)."""

    key: str
    label: str
    kind: str  # "none", "acquisition" or "population"
    reference: str  # which reference profile the windows are compared with
    raw: np.ndarray  # (N, D) raw embeddings (Evidently's input)
    reduced: np.ndarray  # (N, k) PCA-reduced embeddings of that profile
    ood: np.ndarray  # (N,) OOD scores under that profile
    probs: np.ndarray  # (N, C) calibrated probabilities
    labels: np.ndarray | None  # (N,) task class indices, None when not task labels
    stats: pd.DataFrame  # (N, 15) image statistics
    note: str = ""

    def __len__(self) -> int:
        return len(self.probs)

    def window(self, idx: np.ndarray):
        from radvigil.monitoring import WindowData

        return WindowData(
            embeddings=self.reduced[idx],
            probs=self.probs[idx],
            labels=None if self.labels is None else self.labels[idx],
            stats=self.stats.iloc[idx],
            ood_scores=self.ood[idx],
        )

    def subset(self, idx: np.ndarray, key: str, label: str, kind: str, note: str = "") -> Pool:
        return Pool(
            key,
            label,
            kind,
            self.reference,
            self.raw[idx],
            self.reduced[idx],
            self.ood[idx],
            self.probs[idx],
            None if self.labels is None else self.labels[idx],
            self.stats.iloc[idx].reset_index(drop=True),
            note,
        )


@dataclass
class Images:
    """Decoded real images (original size, uint8) with their task labels."""

    pixels: list[np.ndarray]
    labels: np.ndarray | None
    frame: pd.DataFrame

    def take(self, idx: np.ndarray) -> Images:
        return Images(
            [self.pixels[i] for i in idx],
            None if self.labels is None else self.labels[idx],
            self.frame.iloc[idx].reset_index(drop=True),
        )


def infer(engine: Any, pixels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and raw embeddings, ``INFER_BATCH`` images per ORT call."""
    probs, emb = [], []
    for start in range(0, len(pixels), INFER_BATCH):
        p, e = engine.predict(pixels[start : start + INFER_BATCH])
        probs.append(p)
        emb.append(e)
    return np.concatenate(probs), np.concatenate(emb)


def make_pool(
    engine: Any,
    profile: Any,
    images: Images,
    key: str,
    label: str,
    kind: str,
    reference: str,
    transform: Callable[[np.ndarray, int], np.ndarray] | None = None,
    note: str = "",
) -> Pool:
    """Shift (optionally) every image, then run the model and the image statistics once."""
    from radvigil.monitoring import image_stats_frame

    pixels = images.pixels
    if transform is not None:
        pixels = [transform(p, i) for i, p in enumerate(pixels)]
    probs, raw = infer(engine, pixels)
    reduced = profile.projection.reduce(raw)
    return Pool(
        key,
        label,
        kind,
        reference,
        raw,
        reduced,
        profile.ood.score(reduced),
        probs,
        images.labels,
        image_stats_frame(pixels),
        note,
    )


def _load(frame: pd.DataFrame, root, task: Any) -> Images:
    frame = frame.reset_index(drop=True)
    pixels = common.read_pixels([root / p for p in frame["path"]])
    labels = np.array([task.class_index(v) for v in frame["label"]], dtype=np.int64)
    return Images(pixels, labels, frame)


def kermany_held_out(task: Any, per_class: int, seed: int) -> tuple[Images, np.ndarray, str] | None:
    """In-distribution images the model and its reference never saw, and a balanced subset.

    Shared Kermany *train-split* images whose patients are in neither the bundled train nor the
    bundled val split (the model's training data and its reference): same source and split
    procedure as the reference, disjoint patients. ``per_class`` normal and ``2 x per_class``
    pneumonia cases are drawn (seeded); the balanced subset (``per_class`` of each, the
    reference's 50/50) is the unshifted pool, all of them feed the prevalence scenario.
    """
    shared = common.shared_frame()
    if shared is None:
        return None
    bundled = common.bundled_frame()
    used = set(bundled.loc[bundled["split"].isin(["train", "val"]), "patient_id"])
    frame = shared[
        (shared["source_dataset"] == "kermany_guangzhou_pediatric_cxr")
        & (shared["split"] == "train")
        & ~shared["sha256"].isin(bundled["sha256"])
        & ~shared["patient_id"].isin(used)
    ]
    rng = np.random.default_rng(seed)
    parts = []
    for label, count in (("normal", per_class), ("pneumonia", 2 * per_class)):
        rows = frame[frame["label"] == label]
        parts.append(
            rows.iloc[np.sort(rng.choice(len(rows), min(count, len(rows)), replace=False))]
        )
    images = _load(pd.concat(parts), common.SHARED, task)
    normal = np.flatnonzero(images.labels == task.class_index("normal"))
    pneumonia = np.flatnonzero(images.labels != task.class_index("normal"))
    balanced = np.sort(np.concatenate([normal, pneumonia[: len(normal)]]))
    what = (
        f"held-out in-distribution pool: {len(images.pixels)} shared Kermany train-split images "
        f"of {images.frame['patient_id'].nunique()} patients outside the bundled train/val, "
        f"balanced subset {len(balanced)} (unshifted pool and base of the pixel shifts)"
    )
    return images, balanced, what


def kermany_test(task: Any, source: str) -> tuple[Images, str]:
    """The original Kermany test split at the reference's 50/50 balance (a real split shift).

    ``shared``: all 234 normal and the first 234 pneumonia cases (by path) of the original test
    split; ``bundled``: the 251 bundled test images (already balanced).
    """
    frame = common.shared_frame() if source == "shared" else None
    if frame is not None:
        frame = frame[
            (frame["source_dataset"] == "kermany_guangzhou_pediatric_cxr")
            & (frame["split"] == "test")
        ].sort_values("path")
        per_class = int(frame["label"].value_counts().min())
        frame = frame.groupby("label", group_keys=False).head(per_class)
        root = common.SHARED
    else:
        frame, root = common.bundled_frame("test").sort_values("path"), common.BUNDLED
    images = _load(frame, root, task)
    counts = images.frame["label"].value_counts().to_dict()
    where = "shared" if root == common.SHARED else "bundled"
    return images, f"Kermany original test split ({where}): {counts}"


def nih_views(seed: int) -> tuple[Images, Images, Images] | None:
    """NIH ChestX-ray14 subset (64x64 adults): AP reference half, AP held-out half, all PA."""
    frame = common.shared_frame()
    if frame is None:
        return None
    frame = frame[frame["source_dataset"].str.startswith("nih_chestxray14")]
    ap = frame[frame["view_position"] == "AP"].reset_index(drop=True)
    pa = frame[frame["view_position"] == "PA"].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(ap))
    half = len(ap) // 2
    parts = [ap.iloc[np.sort(order[:half])], ap.iloc[np.sort(order[half:])], pa]
    out = []
    for part in parts:
        part = part.reset_index(drop=True)
        pixels = common.read_pixels([common.SHARED / p for p in part["path"]])
        out.append(Images(pixels, None, part))
    return out[0], out[1], out[2]


def nih_profile(engine: Any, reference: Images, class_names: list[str], config: Any):
    """A reference profile of NIH AP images under the same model, calibrated like training does."""
    from radvigil.loop.profiling import calibration_sizes
    from radvigil.monitoring import Monitor, ReferenceProfile, image_stats_frame

    probs, raw = infer(engine, reference.pixels)
    profile = ReferenceProfile.build(
        raw.astype(np.float32),
        probs,
        None,
        image_stats_frame(reference.pixels),
        None,
        class_names=class_names,
        n_components=min(config.profile.n_components, raw.shape[1], len(raw) - 1),
        info={"reference": "nih1000 AP half"},
    )
    profile = Monitor(profile, config).calibrate(calibration_sizes(len(raw)))
    return profile, raw
