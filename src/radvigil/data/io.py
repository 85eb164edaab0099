"""Read PNG/JPEG/DICOM radiographs into :class:`~radvigil.data.image.Image`, safely.

Every failure is an :class:`InputError` that names the file and says what was wrong: empty,
truncated, not an image, too many pixels (decompression bombs), multi-frame, wrong modality.
The format is decided by magic bytes (never by a name or content type), and the memory a decode
would take (rows x columns x bytes per sample x frames, and the inflated size of a deflated
DICOM) is checked against a budget from the headers **before** any pixel is decoded. Metadata
values are reduced to allow-lists; tag values never reach a message or a log line.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from radvigil.data.image import Image, ImageMeta, age_band
from radvigil.errors import ImageTooLargeError, InputError, UnsupportedFormatError

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
# DICOM defined terms for ViewPosition plus the spellings chest datasets use; anything else
# (including free text such as a name typed into the field) is stored as "other".
VIEW_POSITIONS = frozenset(
    {"PA", "AP", "LL", "RL", "LLD", "RLD", "LLO", "RLO", "LAT", "LATERAL", "AP SUPINE"}
)
SEXES = frozenset({"M", "F", "O"})
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_DECODED_BYTES = 64 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_DICM = b"DICM"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_HEADER_ALLOWANCE = 4 * 1024 * 1024  # a deflated DICOM's non-pixel elements, inflated
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9 ._&()/-]{1,64}$")
_BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}
_CHANNELS_AFTER_CONVERT = {"P": 3, "PA": 4, "LA": 2}
_pydicom_quiet = False


def read_image(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Image:
    """Read a radiograph from a path or raw bytes; ``name`` labels errors for bytes input.

    Raises:
        UnsupportedFormatError: the bytes are not PNG, JPEG or DICOM Part 10.
        ImageTooLargeError: decoding would take more than ``max_pixels`` or
            ``max_decoded_bytes`` (checked from the headers, before decoding).
        InputError: empty, truncated, corrupt or not a single grayscale radiograph.
    """
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
    kind = sniff(data)
    if kind == "dicom":
        return _read_dicom(data, label, max_pixels, max_decoded_bytes)
    if kind is None:
        raise UnsupportedFormatError(
            f"{label}: not a PNG, JPEG or DICOM image (judged by its first bytes)"
        )
    return _read_raster(data, kind, label, max_pixels, max_decoded_bytes)


def sniff(data: bytes) -> str | None:
    """``png``, ``jpeg`` or ``dicom`` from the leading magic bytes, else None."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return "dicom" if is_dicom(data) else None


def is_dicom(data: bytes) -> bool:
    """True when the bytes carry the DICOM Part 10 preamble marker."""
    return len(data) >= 132 and data[128:132] == _DICM


def _check_budget(
    label: str,
    width: int,
    height: int,
    per_pixel: int,
    frames: int,
    max_pixels: int,
    max_bytes: int,
) -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{label}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label}: image is {width}x{height} pixels, over the limit of {max_pixels:,}"
        )
    needed = width * height * per_pixel * frames
    if needed > max_bytes:
        raise ImageTooLargeError(
            f"{label}: decoding would take {needed:,} bytes ({width}x{height}, {per_pixel} "
            f"bytes per pixel, {frames} frame(s)), over the budget of {max_bytes:,}"
        )


def _read_raster(data: bytes, kind: str, label: str, max_pixels: int, max_bytes: int) -> Image:
    fmt = "PNG" if kind == "png" else "JPEG"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            pil = PILImage.open(io.BytesIO(data), formats=[fmt])
            width, height = pil.size
            bands = max(len(pil.getbands()), _CHANNELS_AFTER_CONVERT.get(pil.mode, 1))
            per_pixel = bands * _BYTES_PER_BAND.get(pil.mode, 1)
            _check_budget(label, width, height, per_pixel, 1, max_pixels, max_bytes)
            if getattr(pil, "n_frames", 1) > 1:
                raise InputError(f"{label}: multi-frame images are not supported")
            pil.load()
    except InputError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"{label}: image has too many pixels (decompression bomb guard)"
        ) from exc
    # Pillow's decoders raise many types on hostile bytes (OSError, SyntaxError, ValueError,
    # struct.error, IndexError, ...): all of them mean "this file is broken".
    except Exception as exc:
        raise InputError(f"{label}: {fmt} data is truncated or corrupt") from exc
    return _from_pil(pil, kind, label)


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
        raw = np.asarray(pil, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise InputError(f"{label}: pixel values include NaN or infinity")
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
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.clip(values, lo, hi) - lo) * np.float32(255.0 / (hi - lo))
    return np.round(scaled).astype(np.uint8)


def _quiet_pydicom() -> None:
    """pydicom's own log lines quote tag values (names, IDs, dates): keep them out of logs."""
    global _pydicom_quiet
    if not _pydicom_quiet:
        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
        _pydicom_quiet = True


def _check_inflation(data: bytes, label: str, max_bytes: int) -> None:
    """Refuse a deflated DICOM whose dataset would inflate beyond the budget (zip bombs)."""
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception as exc:  # whatever pydicom raises here, the meta header is corrupt
        raise InputError(f"{label}: DICOM file meta information is corrupt") from exc
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return
    limit = max_bytes + _HEADER_ALLOWANCE
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, inflated = data[fp.tell() :], 0
    try:
        while pending and inflated <= limit:  # 1 MiB at a time: never holds the inflated data
            inflated += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise InputError(f"{label}: deflated DICOM data is corrupt") from exc
    if inflated > limit:
        raise ImageTooLargeError(
            f"{label}: deflated DICOM inflates to more than {limit:,} bytes (the decode budget)"
        )


def _read_dicom(data: bytes, label: str, max_pixels: int, max_bytes: int) -> Image:
    _quiet_pydicom()
    _check_inflation(data, label, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _parse_dicom(pydicom.dcmread(io.BytesIO(data)), label, max_pixels, max_bytes)
    except InputError:
        raise
    # pydicom converts elements lazily and its pixel handlers raise many types on hostile
    # headers (ValueError, TypeError, KeyError, IndexError, struct.error, ...). The message
    # stays generic: pydicom's own text can quote tag values.
    except Exception as exc:
        raise InputError(
            f"{label}: DICOM header or pixel data is malformed ({type(exc).__name__})"
        ) from exc


def _int(ds: pydicom.Dataset, keyword: str, label: str, default: int) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    try:
        return int(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label}: DICOM {keyword} is not a whole number") from exc


def _parse_dicom(ds: pydicom.Dataset, label: str, max_pixels: int, max_bytes: int) -> Image:
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        shown = modality if _SAFE_TEXT.match(modality or "-") and len(modality) <= 4 else "?"
        raise InputError(
            f"{label}: modality {shown or 'missing'!r} is not a radiograph; "
            f"accepted: {sorted(RADIOGRAPH_MODALITIES)}"
        )
    frames = _int(ds, "NumberOfFrames", label, 1)
    if frames > 1:
        raise InputError(f"{label}: multi-frame DICOM ({frames} frames) is not supported")
    if "PixelData" not in ds:
        raise InputError(f"{label}: DICOM file has no pixel data")
    rows, cols = _int(ds, "Rows", label, 0), _int(ds, "Columns", label, 0)
    bits = _int(ds, "BitsAllocated", label, 16)
    samples = _int(ds, "SamplesPerPixel", label, 1)
    if not (1 <= bits <= 64 and 1 <= samples <= 4):
        raise InputError(f"{label}: DICOM BitsAllocated/SamplesPerPixel are out of range")
    _check_budget(
        label, cols, rows, samples * ((bits + 7) // 8), max(frames, 1), max_pixels, max_bytes
    )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"{label}: DICOM is not a grayscale (MONOCHROME) radiograph")
    raw = ds.pixel_array
    values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    windowed = apply_voi_lut(values, ds) if _has_voi(ds) else values
    if windowed.ndim != 2:
        raise InputError(f"{label}: expected a single 2-D frame, got shape {windowed.shape}")
    windowed = np.asarray(windowed, dtype=np.float32)
    if not np.isfinite(windowed).all():
        raise InputError(f"{label}: DICOM pixel values include NaN or infinity")
    pixels = _window_to_uint8(windowed, None, None)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    meta = ImageMeta(
        source_format="dicom",
        width=cols,
        height=rows,
        bit_depth=_int(ds, "BitsStored", label, 8),
        channels=1,
        colorfulness=0.0,
        modality=modality,
        view_position=view_position(_text(ds, "ViewPosition")),
        manufacturer=safe_text(_text(ds, "Manufacturer")),
        body_part=body_part(_text(ds, "BodyPartExamined")),
        age_band=age_band(_text(ds, "PatientAge")),
        sex=sex if (sex := (_text(ds, "PatientSex") or "").upper()) in SEXES else None,
        photometric=photometric,
    )
    return Image(np.ascontiguousarray(pixels), meta)


def view_position(value: str | None) -> str | None:
    """A view from the allow-list (upper case), "other" for anything else, None if absent."""
    if not value:
        return None
    text = " ".join(str(value).upper().split())
    return text if text in VIEW_POSITIONS else "other"


def body_part(value: str | None) -> str | None:
    """BodyPartExamined as a short code word, "other" when it is free text, None if absent."""
    if not value:
        return None
    text = str(value).strip().upper()
    return text if re.fullmatch(r"[A-Z ]{1,16}", text) else "other"


def safe_text(value: str | None) -> str | None:
    """A short plain label (e.g. a manufacturer); None for anything that looks like free text."""
    if not value or not _SAFE_TEXT.match(value):
        return None
    return value


def _has_voi(ds: pydicom.Dataset) -> bool:
    return "WindowCenter" in ds or "VOILUTSequence" in ds


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
