"""The input contract: which decoded images the service refuses to score, and why.

A refused image gets a 422 with the reason and no probabilities or findings at all, so a system
that reads only ``findings`` can never see a finding for a photo, a blank frame or a knee.
Softer problems (low contrast, odd exposure, out-of-distribution) are scored and routed to
review instead (:mod:`radvigil.service.assessment`).
"""

from __future__ import annotations

from radvigil.data.image import Image
from radvigil.data.qc_checks import QCConfig

# BodyPartExamined values (DICOM defined terms and common spellings) that mean a chest film.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "PORT CHEST", "CHEST PA"})
BLANK_STD = 2.0  # pixel std (0-255) below which a frame carries no image


def refusal(image: Image, config: QCConfig) -> str | None:
    """Why ``image`` is not a chest radiograph the model may score, or None when it may be."""
    meta, pixels = image.meta, image.pixels
    if meta.body_part is not None and meta.body_part not in CHEST_BODY_PARTS:
        shown = meta.body_part if meta.body_part != "other" else "free text"
        return f"BodyPartExamined is {shown!r}, not a chest"
    if meta.colorfulness > config.max_colorfulness:
        return (
            f"a colour image (channel difference {meta.colorfulness:.1f} > "
            f"{config.max_colorfulness}): a photo, not a radiograph"
        )
    height, width = pixels.shape
    if min(width, height) < config.min_side:
        return f"{width}x{height} px is too small for a chest radiograph (min {config.min_side})"
    if float(pixels[::4, ::4].std()) < BLANK_STD:  # a sample: std of all would copy to float64
        return "the image is blank (one flat grey level)"
    return None
