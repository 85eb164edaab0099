"""Drift detectors registered by key; importing this package registers all of them.

Keys: ``image_stats``, ``metadata`` (univariate), ``mmd``, ``domain_classifier``, ``ood_rate``
(embeddings), ``bbsd``, ``label_shift`` (outputs), ``cbpe``, ``atc`` (label-free performance),
``performance``, ``concept`` (labelled feedback), ``harm`` (the estimated cost of a shift at
the served threshold and the suite perturbation that explains it). :func:`describe_detectors`
lists their defaults.
"""

from radvigil.monitoring.detectors import (
    embedding,
    estimation,
    harm,
    labelled,
    outputs,
    univariate,
)
from radvigil.monitoring.detectors.base import (
    Detector,
    DetectorParams,
    Measurement,
    Skipped,
    describe_detectors,
    detector_names,
    make_detector,
    register,
)

__all__ = [
    "Detector",
    "DetectorParams",
    "Measurement",
    "Skipped",
    "describe_detectors",
    "detector_names",
    "embedding",
    "estimation",
    "harm",
    "labelled",
    "make_detector",
    "outputs",
    "register",
    "univariate",
]
