"""Drift detectors registered by key; importing this package registers all of them.

Keys: ``image_stats``, ``metadata`` (univariate), ``mmd``, ``domain_classifier``, ``ood_rate``
(embeddings), ``bbsd``, ``label_shift`` (outputs), ``cbpe``, ``atc`` (label-free performance),
``performance``, ``concept`` (labelled feedback). :func:`describe_detectors` lists their defaults.
"""

from radvigil.monitoring.detectors import embedding, estimation, labelled, outputs, univariate
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
    "labelled",
    "make_detector",
    "outputs",
    "register",
    "univariate",
]
