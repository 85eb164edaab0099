"""The reference profile of a model version: what its monitors compare every window against.

Built once from the validation data of a model version (embeddings, probabilities, labels,
image statistics, metadata), it keeps a PCA of the embedding space, a capped sample of reduced
reference embeddings and outputs, metadata value counts, a Mahalanobis OOD scorer whose
reference 99th percentile marks drifters, and the calibrated detector thresholds. It is saved
as one ``.npz`` (arrays plus a JSON header, no pickle) to be logged inside the model version.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radvigil.errors import DataError, InputError
from radvigil.monitoring.guards import guard_bands
from radvigil.monitoring.ood import MahalanobisScorer, Projection, cross_fitted_scores
from radvigil.monitoring.result import Calibration
from radvigil.monitoring.windows import UNLABELLED, WindowData

PROFILE_FILE = "reference_profile.npz"
FORMAT_VERSION = 1
_ARRAYS = ("embeddings", "probs", "labels", "ood_scores", "groups")


@dataclass(frozen=True)
class ReferenceProfile:
    """Reference side of every monitor; see :meth:`build` and :meth:`from_path`."""

    class_names: tuple[str, ...]
    projection: Projection
    ood: MahalanobisScorer
    reference: WindowData
    value_counts: dict[str, dict[str, int]]
    calibrations: tuple[Calibration, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        probs: np.ndarray,
        labels: np.ndarray | None,
        stats: pd.DataFrame | None,
        metadata: pd.DataFrame | None,
        *,
        class_names: list[str],
        n_components: int = 16,
        max_reference: int = 2000,
        ood_quantile: float = 0.99,
        seed: int = 0,
        info: dict[str, Any] | None = None,
        groups: np.ndarray | None = None,
    ) -> ReferenceProfile:
        """Profile a model version from its validation outputs.

        Args:
            embeddings: Raw embeddings, shape (N, D) (float32).
            probs: Calibrated class probabilities, shape (N, C).
            labels: True class indices (N,), -1 where unknown; None if there are none.
            stats: Image statistics (:data:`~radvigil.monitoring.features.STAT_COLUMNS`).
            metadata: Categorical metadata per image (site, view_position, ...).
            class_names: The task's classes, in probability column order.
            n_components: PCA dimensions kept for embedding monitors and OOD scores.
            max_reference: Rows kept in the profile (a seeded random subsample beyond it).
            ood_quantile: Reference quantile of the OOD score above which a case is a drifter.
            seed: Seed of the PCA solver and the subsample.
            info: Provenance to keep (model version, dataset version, ...).
            groups: Per row, a code shared by the rows of one patient (e.g. from
                ``pd.factorize`` of patient ids); the OOD threshold is then cross-fitted and
                the detectors calibrated by whole patients. None: rows are independent.

        Returns:
            The profile, with no calibrated thresholds yet.
        """
        full = WindowData(
            embeddings=embeddings,
            probs=probs,
            labels=labels,
            stats=stats,
            metadata=metadata,
            groups=groups,
        )
        if full.probs is None or full.probs.shape[1] != len(class_names):
            raise InputError(f"probabilities must have one column per class of {class_names}")
        if full.labels is not None and (
            full.labels.max() >= len(class_names) or full.labels.min() < UNLABELLED
        ):
            raise InputError(f"labels must be class indices below {len(class_names)} or -1")
        vectors = full.embeddings
        if vectors is None:
            raise InputError("a reference profile needs the embeddings of its cases")
        projection = Projection.fit(vectors, n_components, seed)
        reduced = projection.reduce(vectors)
        # Cross-fitted scores stand for new cases. Row-level folds set the drifter threshold:
        # per-case routing favours sensitivity (patient-level folds lifted it until an adult
        # DICOM passed unflagged). Patient-level folds, where there are patients, say how often
        # new patients pass that threshold: the ood_rate test's null, and the reference's
        # OOD scores, so the monitors compare a window with what new patients look like.
        unseen = cross_fitted_scores(vectors, projection.n_components, seed)
        ood = MahalanobisScorer.fit(reduced, ood_quantile, unseen)
        if full.groups is not None:
            unseen = cross_fitted_scores(vectors, projection.n_components, seed, full.groups)
            ood = dataclasses.replace(ood, n_above=int(np.count_nonzero(unseen > ood.threshold)))
        full = dataclasses.replace(full, embeddings=reduced, ood_scores=unseen)
        rng = np.random.default_rng(seed)
        keep = np.arange(len(full))
        if len(full) > max_reference:
            keep = np.sort(rng.choice(len(full), max_reference, replace=False))
        counts = {}
        if full.metadata is not None:
            counts = {c: full.metadata[c].value_counts().to_dict() for c in full.metadata}
        return cls(
            tuple(class_names),
            projection,
            ood,
            full.subset(keep),
            {c: {str(k): int(v) for k, v in vc.items()} for c, vc in counts.items()},
            (),
            {**(info or {}), "n_source": len(full), "n_kept": len(keep), "seed": seed},
        )

    def prepare(self, window: WindowData) -> WindowData:
        """Reduce a window's embeddings into the profile's PCA space and fill its OOD scores."""
        if window.embeddings is None:
            return window
        reduced = self.projection.reduce(window.embeddings)
        scores = window.ood_scores if window.ood_scores is not None else self.ood.score(reduced)
        return dataclasses.replace(window, embeddings=reduced, ood_scores=scores)

    @functools.cached_property
    def guard_bands(self) -> dict[str, tuple[float, float]]:
        """The reference bands of the per-case guards' statistics (empty without them)."""
        stats = self.reference.stats
        return {} if stats is None else guard_bands(stats)

    def labelled_reference(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Reference probabilities and labels of the labelled rows, or None without labels."""
        ref = self.reference
        if ref.labels is None or ref.probs is None or not (ref.labels != UNLABELLED).any():
            return None
        mask = ref.labels != UNLABELLED
        return ref.probs[mask], ref.labels[mask]

    def with_reference(self, reference: WindowData) -> ReferenceProfile:
        """The same profile compared against other reference rows (used by calibration)."""
        return dataclasses.replace(self, reference=reference)

    def with_calibrations(self, calibrations: list[Calibration]) -> ReferenceProfile:
        """A copy whose calibrations replace any of the same detector and window size."""
        new = {(c.detector, c.window_size) for c in calibrations}
        kept = [c for c in self.calibrations if (c.detector, c.window_size) not in new]
        return dataclasses.replace(self, calibrations=(*kept, *calibrations))

    def calibration_for(self, detector: str, window_size: int) -> Calibration | None:
        """The calibration of ``detector`` for the largest calibrated window size not above
        ``window_size``; None when every calibrated size is larger.

        Null statistics spread less as windows grow, so a smaller window's threshold is
        conservative on a larger window, while a larger window's would raise false alarms on a
        smaller one (the detector's own test decides there instead).
        """
        found = [
            c for c in self.calibrations if c.detector == detector and c.window_size <= window_size
        ]
        return max(found, key=lambda c: c.window_size) if found else None

    def to_path(self, directory: str | Path) -> Path:
        """Write the profile as ``reference_profile.npz`` in ``directory``; return the file."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        ref = self.reference
        arrays: dict[str, Any] = {
            "projection.mean": self.projection.mean,
            "projection.components": self.projection.components,
            "projection.explained_variance_ratio": self.projection.explained_variance_ratio,
            "ood.location": self.ood.location,
            "ood.precision": self.ood.precision,
        }
        arrays |= {
            f"reference.{n}": getattr(ref, n) for n in _ARRAYS if getattr(ref, n) is not None
        }
        if ref.stats is not None:
            arrays["reference.stats"] = ref.stats.to_numpy(np.float64)
        if ref.metadata is not None:
            for i, column in enumerate(ref.metadata.columns):
                arrays[f"reference.metadata.{i}"] = ref.metadata[column].to_numpy(str)
        header = {
            "format_version": FORMAT_VERSION,
            "class_names": list(self.class_names),
            "ood": {
                "threshold": self.ood.threshold,
                "quantile": self.ood.quantile,
                "n_fitted": self.ood.n_fitted,
                "n_above": self.ood.n_above,
            },
            "stat_columns": None if ref.stats is None else list(ref.stats.columns),
            "metadata_columns": None if ref.metadata is None else list(ref.metadata.columns),
            "value_counts": self.value_counts,
            "calibrations": [c.model_dump(mode="json") for c in self.calibrations],
            "info": self.info,
        }
        arrays["header"] = np.array(json.dumps(header))
        target = folder / PROFILE_FILE
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.part")
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        Path(tmp).replace(target)
        return target

    @classmethod
    def from_path(cls, path: str | Path) -> ReferenceProfile:
        """Load a profile from its file or from the directory holding it."""
        file = Path(path)
        if file.is_dir():
            file = file / PROFILE_FILE
        try:
            with np.load(file, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            header = json.loads(str(arrays.pop("header")))
        except FileNotFoundError as exc:
            raise DataError(f"no reference profile at {file}") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"reference profile {file} is unreadable: {exc}") from exc
        if header.get("format_version") != FORMAT_VERSION:
            raise DataError(f"reference profile {file} has format {header.get('format_version')}")
        return cls._from_arrays(arrays, header)

    @classmethod
    def _from_arrays(
        cls, arrays: dict[str, np.ndarray], header: dict[str, Any]
    ) -> ReferenceProfile:
        stats = metadata = None
        if header["stat_columns"] is not None:
            stats = pd.DataFrame(arrays["reference.stats"], columns=header["stat_columns"])
        if header["metadata_columns"] is not None:
            metadata = pd.DataFrame(
                {
                    c: arrays[f"reference.metadata.{i}"]
                    for i, c in enumerate(header["metadata_columns"])
                }
            )
        reference = WindowData(
            stats=stats,
            metadata=metadata,
            **{n: arrays.get(f"reference.{n}") for n in _ARRAYS},
        )
        return cls(
            tuple(header["class_names"]),
            Projection(
                arrays["projection.mean"],
                arrays["projection.components"],
                arrays["projection.explained_variance_ratio"],
            ),
            MahalanobisScorer(
                arrays["ood.location"],
                arrays["ood.precision"],
                float(header["ood"]["threshold"]),
                float(header["ood"]["quantile"]),
                int(header["ood"].get("n_fitted", 0)),
                int(header["ood"].get("n_above", 0)),
            ),
            reference,
            header["value_counts"],
            tuple(Calibration.model_validate(c) for c in header["calibrations"]),
            header["info"],
        )
