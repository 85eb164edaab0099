"""Read PNG/JPEG/DICOM radiographs into :class:`~radvigil.data.image.Image`, safely.

Every failure is an :class:`InputError` that names the file and says what was wrong: empty,
truncated, not an image, too many pixels (decompression bombs), multi-frame, wrong modality.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from radvigil.data.image import Image, ImageMeta, age_band
from radvigil.errors import InputError

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
DEFAULT_MAX_PIXELS = 50_000_000
_DICM = b"DICM"


def read_image(
    source: str | Path | bytes, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image:
    """Read a radiograph from a path or raw bytes; ``name`` labels errors for bytes input."""
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise InputError(f"{label}: cannot read file ({exc.strerror})") from exc
    if not data:
        raise InputError(f"{label}: file is empty (0 bytes)")
    if is_dicom(data):
        return _read_dicom(data, label, max_pixels)
    return _read_raster(data, label, max_pixels)


def is_dicom(data: bytes) -> bool:
    """True when the bytes carry the DICOM Part 10 preamble marker."""
    return len(data) >= 132 and data[128:132] == _DICM


def _read_raster(data: bytes, label: str, max_pixels: int) -> Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            pil = PILImage.open(io.BytesIO(data))
            width, height = pil.size
            if width * height > max_pixels:
                raise InputError(
                    f"{label}: image is {width}x{height} pixels, over the limit of {max_pixels:,}"
                )
            if getattr(pil, "n_frames", 1) > 1:
                raise InputError(f"{label}: multi-frame images are not supported")
            fmt = (pil.format or "unknown").lower()
            pil.load()
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(f"{label}: not a PNG, JPEG or DICOM image") from exc
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise InputError(f"{label}: image has too many pixels (decompression bomb guard)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{label}: image data is truncated or corrupt ({exc})") from exc
    return _from_pil(pil, fmt, label)


def _from_pil(pil: PILImage.Image, fmt: str, label: str) -> Image:
    mode = pil.mode
    colorfulness = 0.0
    if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA"):
        rgb = np.asarray(pil.convert("RGB"), dtype=np.int16)
        colorfulness = float(
            (np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])).mean() / 2
        )
        pixels = np.asarray(pil.convert("L"), dtype=np.uint8)
        channels, bit_depth = 3, 8
    elif mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raw = np.asarray(pil, dtype=np.float64)
        pixels = _window_to_uint8(raw, None, None)
        channels, bit_depth = 1, 16
    elif mode in ("L", "1"):
        pixels = np.asarray(pil.convert("L"), dtype=np.uint8)
        channels, bit_depth = 1, 8
    else:
        raise InputError(f"{label}: unsupported pixel mode {mode!r}")
    meta = ImageMeta(
        source_format=fmt,
        width=pixels.shape[1],
        height=pixels.shape[0],
        bit_depth=bit_depth,
        channels=channels,
        colorfulness=round(colorfulness, 3),
    )
    return Image(np.ascontiguousarray(pixels), meta)


def _window_to_uint8(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Map values to 0-255; without a window, use the image's own min-max range."""
    lo = float(values.min()) if low is None else low
    hi = float(values.max()) if high is None else high
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, lo, hi) - lo) / (hi - lo) * 255.0
    return np.round(scaled).astype(np.uint8)


def _read_dicom(data: bytes, label: str, max_pixels: int) -> Image:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as exc:
        raise InputError(f"{label}: DICOM file is truncated or corrupt ({exc})") from exc
    modality = str(ds.get("Modality", "")).upper()
    if modality not in RADIOGRAPH_MODALITIES:
        raise InputError(
            f"{label}: modality {modality or 'missing'!r} is not a radiograph; "
            f"accepted: {sorted(RADIOGRAPH_MODALITIES)}"
        )
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(
            f"{label}: multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported"
        )
    if "PixelData" not in ds:
        raise InputError(f"{label}: DICOM file has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise InputError(
            f"{label}: image is {cols}x{rows} pixels, over the limit of {max_pixels:,}"
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"{label}: photometric {photometric!r} is not a grayscale radiograph")
    try:
        raw = ds.pixel_array
        values = apply_modality_lut(raw, ds)
        windowed = apply_voi_lut(values, ds) if _has_voi(ds) else values
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError) as exc:
        raise InputError(f"{label}: cannot decode DICOM pixel data ({exc})") from exc
    if windowed.ndim != 2:
        raise InputError(f"{label}: expected a single 2-D frame, got shape {windowed.shape}")
    pixels = _window_to_uint8(np.asarray(windowed, dtype=np.float64), None, None)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    meta = ImageMeta(
        source_format="dicom",
        width=cols,
        height=rows,
        bit_depth=int(ds.get("BitsStored", 8)),
        channels=1,
        colorfulness=0.0,
        modality=modality,
        view_position=_text(ds, "ViewPosition"),
        manufacturer=_text(ds, "Manufacturer"),
        body_part=_text(ds, "BodyPartExamined"),
        age_band=age_band(_text(ds, "PatientAge")),
        sex=_text(ds, "PatientSex"),
        photometric=photometric,
    )
    return Image(np.ascontiguousarray(pixels), meta)


def _has_voi(ds: pydicom.Dataset) -> bool:
    return "WindowCenter" in ds or "VOILUTSequence" in ds


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
