"""Simulated production traffic: real held-back studies posted to a running service.

Used by the demo scenario and the closed-loop integration test. Studies are read from a
manifest, optionally shifted (a seeded scanner change, one seed per study), encoded as PNG and
posted one at a time, so the service logs them in the same order on every run and machine.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from PIL import Image as PILImage

from radvigil.data.io import read_image
from radvigil.data.shifts import apply_shift, compose, parse_shift

Progress = Callable[[Iterable], Iterable]


@dataclass(frozen=True)
class Study:
    """One study to send: its PNG bytes, its ground-truth label and where it came from."""

    name: str
    png: bytes
    label: str
    source: str


@dataclass(frozen=True)
class Served:
    """The service's answer to one study, with the study's ground truth beside it."""

    request_id: str
    label: str
    model_version: str
    predicted_class: str
    served_by: str
    routed_to_review: bool
    source: str


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def load_studies(
    root: Path,
    frame: pd.DataFrame,
    shift: Sequence[str] = (),
    *,
    seed: int = 0,
    prefix: str = "study",
) -> list[Study]:
    """Studies for the rows of ``frame`` (``path`` relative to ``root``, ``label``), in order.

    Args:
        shift: shift specs (``NAME:key=value``) applied in order, e.g. a scanner change.
        seed: the shift's seed for the first study; study ``i`` uses ``seed + i``.
    """
    pipeline = compose(*(parse_shift(s) for s in shift)) if shift else None
    studies = []
    for i, row in enumerate(frame.itertuples(index=False)):
        pixels = read_image(root / row.path).pixels
        if pipeline is not None:
            pixels = apply_shift(pixels, pipeline, seed=seed + i)
        studies.append(Study(f"{prefix}-{i}.png", png_bytes(pixels), str(row.label), row.path))
    return studies


class TrafficSimulator:
    """Posts studies to ``/v1/predict`` with a service key, one at a time."""

    def __init__(self, client: httpx.Client, token: str, metadata: str | None = None) -> None:
        self.client, self.token, self.metadata = client, token, metadata

    def send(self, studies: Sequence[Study], progress: Progress = lambda x: x) -> list[Served]:
        """Post every study in order; each answer is paired with the study's label."""
        served = []
        for study in progress(studies):
            response = self.client.post(
                "/v1/predict",
                headers={"X-API-Key": self.token},
                files={"file": (study.name, study.png, "image/png")},
                data={"metadata": self.metadata} if self.metadata else None,
            )
            response.raise_for_status()
            body = response.json()
            served.append(
                Served(
                    request_id=body["request_id"],
                    label=study.label,
                    model_version=body["model_version"],
                    predicted_class=body["predicted_class"],
                    served_by=body["served_by"],
                    routed_to_review=bool(body["routed_to_review"]),
                    source=study.source,
                )
            )
        return served
