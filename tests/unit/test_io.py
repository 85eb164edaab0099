"""Reading real radiographs, and one clear InputError per kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file

from radvigil.data.io import read_image
from radvigil.errors import InputError

BUNDLED_JPEG = "kermany/test/normal/IM-0001-0001.jpg"

DEIDENTIFIED_FIELDS = {
    "source_format",
    "width",
    "height",
    "bit_depth",
    "channels",
    "colorfulness",
    "modality",
    "view_position",
    "manufacturer",
    "body_part",
    "age_band",
    "sex",
    "photometric",
}


def test_reads_bundled_jpeg(bundled: Path) -> None:
    image = read_image(bundled / BUNDLED_JPEG)
    assert image.pixels.dtype == np.uint8
    assert image.pixels.shape == (224, 224)
    assert image.meta.source_format == "jpeg"
    assert (image.meta.channels, image.meta.bit_depth, image.meta.colorfulness) == (1, 8, 0.0)
    assert image.pixels.std() > 40  # a real radiograph, not a blank


def test_monochrome1_chest_dicom_has_dark_lungs_and_no_phi(shared_data: Path) -> None:
    path = shared_data / "dicom" / "RG1_UNCI.dcm"
    image = read_image(path)
    px = image.pixels.astype(float)
    h, w = px.shape
    rows = slice(h // 3, 2 * h // 3)
    lungs = (px[rows, w // 5 : 2 * w // 5].mean() + px[rows, 3 * w // 5 : 4 * w // 5].mean()) / 2
    mediastinum = px[rows, 9 * w // 20 : 11 * w // 20].mean()
    edges = np.r_[px[:, : w // 20].ravel(), px[:, -w // 20 :].ravel()].mean()
    assert lungs < mediastinum - 40  # MONOCHROME1 was inverted: air is dark, as displayed
    assert lungs < edges
    meta = image.meta
    assert (meta.modality, meta.view_position, meta.body_part) == ("CR", "PA", "CHEST")
    assert meta.photometric == "MONOCHROME1"
    assert set(meta.as_dict()) == DEIDENTIFIED_FIELDS
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    identifying = [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "PatientBirthDate")]
    values = {str(v) for v in meta.as_dict().values()}
    assert not {v for v in identifying if v} & values


def test_jpeg2000_copy_gives_the_same_pixels(shared_data: Path) -> None:
    plain = read_image(shared_data / "dicom" / "RG1_UNCI.dcm").pixels.astype(float)
    j2k = read_image(shared_data / "dicom" / "RG1_J2KI.dcm").pixels.astype(float)
    assert plain.shape == j2k.shape
    assert np.abs(plain - j2k).mean() < 1.0


def test_ct_dicom_is_refused_as_wrong_modality() -> None:
    path = get_testdata_file("CT_small.dcm", download=False)  # bundled in pydicom, no network
    assert path is not None and Path(path).is_file()
    with pytest.raises(InputError, match=r"CT_small\.dcm: modality 'CT' is not a radiograph"):
        read_image(path)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _huge_png_header(_: Path) -> bytes:
    """A valid PNG whose IHDR (correct CRC) claims 40000x40000 8-bit grayscale."""
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 40001)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _multi_frame_dicom(shared: Path) -> bytes:
    ds = pydicom.dcmread(shared / "dicom" / "RG1_chest_small_512.dcm")
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _truncated_jpeg(shared: Path) -> bytes:
    data = (shared / "cxr" / BUNDLED_JPEG).read_bytes()
    return data[: len(data) // 2]


def _truncated_png(shared: Path) -> bytes:
    data = _png(read_image(shared / "cxr" / BUNDLED_JPEG).pixels)
    return data[: len(data) // 2]


BAD_INPUTS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "truncated.jpg": (_truncated_jpeg, "truncated or corrupt"),
    "truncated.png": (_truncated_png, "truncated or corrupt"),
    "empty.png": (lambda _: b"", "empty"),
    "random.png": (
        lambda _: np.random.default_rng(0).bytes(4096),
        "not a PNG, JPEG or DICOM image",
    ),
    "huge.png": (_huge_png_header, "too many pixels"),
    "two_frames.dcm": (_multi_frame_dicom, "multi-frame DICOM"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_error_naming_the_file(
    name: str, tmp_path: Path, shared_data: Path
) -> None:
    make, reason = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(make(shared_data))
    with pytest.raises(InputError, match=reason) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_sixteen_bit_png_is_windowed_to_eight_bits(xray: np.ndarray) -> None:
    deep = xray.astype(np.uint16) * 200 + 1000  # a 16-bit rendering of a real X-ray
    buffer = io.BytesIO()
    PILImage.fromarray(deep).save(buffer, format="PNG")
    image = read_image(buffer.getvalue(), name="deep.png")
    assert image.meta.bit_depth == 16
    assert image.pixels.dtype == np.uint8
    assert (image.pixels.min(), image.pixels.max()) == (0, 255)
    expected = np.round((xray - xray.min()) / (xray.max() - xray.min()) * 255)
    assert np.abs(image.pixels - expected).max() <= 1


def test_rgb_is_converted_to_grayscale_and_colour_is_measured(xray: np.ndarray) -> None:
    gray_rgb = read_image(_png(np.stack([xray] * 3, axis=-1)), name="gray.png")
    assert gray_rgb.meta.channels == 3
    assert gray_rgb.meta.colorfulness == 0.0
    np.testing.assert_array_equal(gray_rgb.pixels, xray)
    tinted = np.stack([xray] * 3, axis=-1).astype(int)
    tinted[..., 0] += 60
    tinted[..., 2] -= 40
    colour = read_image(_png(np.clip(tinted, 0, 255).astype(np.uint8)), name="tinted.png")
    assert colour.pixels.shape == xray.shape
    assert colour.meta.colorfulness > 30
