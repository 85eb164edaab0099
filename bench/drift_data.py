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

import numpy as np
import pandas as pd

from bench import common

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
    # Without a profile the reduction and OOD scores are left to the caller (drift_power.py
    # fills them under each scenario's own profile).
    reduced = raw if profile is None else profile.projection.reduce(raw)
    return Pool(
        key,
        label,
        kind,
        reference,
        raw,
        reduced,
        np.zeros(len(raw)) if profile is None else profile.ood.score(reduced),
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
    """NIH ChestX-ray14 subset (64x64 adults): AP reference half, AP held-out half, all PA.

    The AP halves split *patients* (363 AP films of 70 patients): the held-out half is new
    patients, as a monitored stream brings them, not other films of the reference's patients.
    """
    frame = common.shared_frame()
    if frame is None:
        return None
    frame = frame[frame["source_dataset"].str.startswith("nih_chestxray14")]
    ap = frame[frame["view_position"] == "AP"].reset_index(drop=True)
    pa = frame[frame["view_position"] == "PA"].reset_index(drop=True)
    patients = ap["patient_id"].unique()
    first = np.random.default_rng(seed).permutation(len(patients))[: len(patients) // 2]
    in_first = ap["patient_id"].isin(patients[first])
    parts = [ap[in_first], ap[~in_first], pa]
    out = []
    for part in parts:
        part = part.reset_index(drop=True)
        pixels = common.read_pixels([common.SHARED / p for p in part["path"]])
        out.append(Images(pixels, None, part))
    return out[0], out[1], out[2]


def save_pools(path, pools: list[Pool], extra: dict[str, np.ndarray]) -> None:
    """Every pool's arrays (and ``extra`` arrays) in one ``.npz``, no pickle."""
    import json

    arrays: dict[str, np.ndarray] = dict(extra)
    meta = []
    for p in pools:
        meta.append(
            {
                "key": p.key,
                "label": p.label,
                "kind": p.kind,
                "reference": p.reference,
                "note": p.note,
                "columns": list(p.stats.columns),
                "labels": p.labels is not None,
            }
        )
        for name in ("raw", "reduced", "ood", "probs"):
            arrays[f"{p.key}.{name}"] = getattr(p, name)
        arrays[f"{p.key}.stats"] = p.stats.to_numpy(np.float64)
        if p.labels is not None:
            arrays[f"{p.key}.labels"] = p.labels
    arrays["pools"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def load_pools(path) -> tuple[list[Pool], dict[str, np.ndarray]]:
    """The pools and extra arrays written by :func:`save_pools`."""
    import json

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    pools = []
    for m in json.loads(str(arrays.pop("pools"))):
        k = m["key"]
        pools.append(
            Pool(
                k,
                m["label"],
                m["kind"],
                m["reference"],
                arrays.pop(f"{k}.raw"),
                arrays.pop(f"{k}.reduced"),
                arrays.pop(f"{k}.ood"),
                arrays.pop(f"{k}.probs"),
                arrays.pop(f"{k}.labels") if m["labels"] else None,
                pd.DataFrame(arrays.pop(f"{k}.stats"), columns=m["columns"]),
                m["note"],
            )
        )
    return pools, arrays
