"""The in-memory radiograph: 8-bit grayscale pixels plus de-identified metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ImageMeta:
    """De-identified facts about an image: never names, IDs or dates."""

    source_format: str  # png | jpeg | dicom | ...
    width: int
    height: int
    bit_depth: int  # bits per sample as stored (BitsStored for DICOM)
    channels: int  # channels before grayscale conversion
    colorfulness: float  # mean absolute difference between colour channels, 0 for grayscale
    modality: str | None = None
    view_position: str | None = None
    manufacturer: str | None = None
    body_part: str | None = None
    age_band: str | None = None
    sex: str | None = None
    photometric: str | None = None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Image:
    """Grayscale pixels (uint8, H x W, lungs dark as on a standard display) with metadata."""

    pixels: np.ndarray
    meta: ImageMeta
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 2:
            raise ValueError("Image.pixels must be a 2-D uint8 array")


def age_band(age: str | int | float | None) -> str | None:
    """Coarse age band (decade, capped at 90+) from a DICOM PatientAge like '045Y' or a number."""
    if age in (None, ""):
        return None
    text = str(age).strip().upper()
    unit = text[-1] if text[-1] in "DWMY" else "Y"
    digits = text.rstrip("DWMY")
    try:
        value = float(digits)
    except ValueError:
        return None
    years = value / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]
    if years < 1:
        return "0-1"
    if years < 18:
        return "1-17"
    if years >= 90:
        return "90+"
    low = int(years // 10 * 10)
    return f"{low}-{low + 9}"
