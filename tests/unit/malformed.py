"""A permanent corpus of hostile and malformed inputs, built from real files at test time.

Used by the ``read_image`` unit tests and by the upload-endpoint tests on the real server:
pydicom's own test files (they ship with pydicom) as they are and re-saved as CR, plus the
reproductions of issue 15 (bombs, bad tags, odd shapes, other formats).
"""

from __future__ import annotations

import io
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PYDICOM_FILES = Path(get_testdata_file("CT_small.dcm")).parent


def pydicom_files() -> list[Path]:
    """Every file pydicom ships for its own tests (DICOM and not)."""
    return sorted(p for p in PYDICOM_FILES.rglob("*") if p.is_file())


def as_cr(path: Path) -> bytes | None:
    """The file re-saved with Modality CR (so it reaches pixel decoding), None if unwritable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
        ds.Modality = "CR"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=False)
        return buffer.getvalue()
    except Exception:  # files pydicom itself cannot re-save are skipped
        return None


def pydicom_corpus() -> Iterator[tuple[str, bytes]]:
    for path in pydicom_files():
        yield path.name, path.read_bytes()
        if path.suffix == ".dcm" and (cr := as_cr(path)) is not None:
            yield f"{path.stem}-as-CR.dcm", cr


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom(pixels: np.ndarray | None = None, **tags: object) -> bytes:
    """A small valid CR DICOM (16-bit, 256x256 by default) with the given tags overridden."""
    pixels = pixels if pixels is not None else (np.arange(256 * 256) % 4096).reshape(256, 256)
    pixels = pixels.astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels.tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_raw_tag(data: bytes, keyword_value: bytes, replacement: bytes) -> bytes:
    """Swap a tag's bytes in an encoded file (to store values pydicom would not write)."""
    assert keyword_value in data
    return data.replace(keyword_value, replacement, 1)


def deflate_bomb(inflated_bytes: int = 300 * 1024 * 1024) -> bytes:
    """A deflated-transfer-syntax CR DICOM of ~0.3 MB whose dataset inflates to ~300 MB."""
    side = int((inflated_bytes // 2) ** 0.5)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds = pydicom.Dataset()
    ds.Modality = "CR"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    body = io.BytesIO()
    # the dataset body as explicit VR little endian, then raw-deflated, streamed in chunks
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    header = DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, ds)
    length = side * side * 2
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body.write(compressor.compress(header.getvalue() + pixel_header))
    chunk = b"\x00" * (1 << 20)
    for _ in range(length // len(chunk)):
        body.write(compressor.compress(chunk))
    body.write(compressor.compress(b"\x00" * (length % len(chunk))))
    body.write(compressor.flush())
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    from pydicom.filewriter import write_file_meta_info

    meta_buffer = DicomBytesIO()
    meta_buffer.is_little_endian, meta_buffer.is_implicit_VR = True, False
    write_file_meta_info(meta_buffer, meta, enforce_standard=True)
    out.write(meta_buffer.getvalue())
    out.write(body.getvalue())
    return out.getvalue()


def big_16bit_png(side: int = 7000) -> bytes:
    """A ~100 KB PNG of side x side 16-bit pixels (1 GB+ to decode and process naively)."""
    return png(np.zeros((side, side), dtype=np.uint16))


def reproductions() -> dict[str, bytes]:
    """The input-triggered failures of issue 15, by name (each must be a 4xx, never a 500)."""
    return {
        "strip-1x5000.png": png(np.full((1, 5000), 128, dtype=np.uint8)),
        "strip-5000x1.png": png(np.full((5000, 1), 128, dtype=np.uint8)),
        "badVR-as-CR.dcm": as_cr(PYDICOM_FILES / "badVR.dcm") or b"",
        "deflate-bomb.dcm": deflate_bomb(),
        "big-16bit.png": big_16bit_png(),
    } | _patched()


def _patched() -> dict[str, bytes]:
    """Values pydicom refuses to write, put in by editing the encoded bytes."""
    return {
        "frames-abc.dcm": with_raw_tag(
            dicom(NumberOfFrames="7"), b"IS\x02\x007 ", b"IS\x04\x00abc "
        ),
        "frames-1A.dcm": with_raw_tag(dicom(NumberOfFrames="7"), b"IS\x02\x007 ", b"IS\x02\x001A"),
        "rescale-slope-text.dcm": with_raw_tag(
            dicom(RescaleSlope="2", RescaleIntercept="0"), b"DS\x02\x002 ", b"DS\x02\x00xy"
        ),
        "window-text.dcm": with_raw_tag(
            dicom(WindowCenter="100", WindowWidth="200"), b"DS\x04\x00100 ", b"DS\x04\x00abcd"
        ),
        "long-view.dcm": with_raw_tag(
            dicom(ViewPosition="PA"),
            b"CS\x02\x00PA",
            b"CS\x1a\x00DOE^JANE MRN123456 LONGXXX",
        ),
    }
