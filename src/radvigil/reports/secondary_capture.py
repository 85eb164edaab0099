"""A Secondary Capture of the explanation overlay, with the warning burned into the pixels.

A viewer shows the picture to anyone, with no SR support needed: so the decision-support warning,
the model's name and version and each finding's verdict are drawn into a banner above the image,
and the object says so (``BurnedInAnnotation`` YES).
"""

from __future__ import annotations

import io
import textwrap
import warnings

import highdicom as hd
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from pydicom import Dataset

from radvigil.errors import InputError
from radvigil.reports.dicom_sr import MANUFACTURER
from radvigil.reports.facts import ResultFacts
from radvigil.reports.uids import derived_uid

SERIES_NUMBER = 9902
MIN_WIDTH = 512  # small overlays are scaled up so the banner text stays legible


def banner_lines(facts: ResultFacts) -> list[str]:
    """The text burned into the capture: warning, algorithm, then one line per finding."""
    lines = [f"AI RESULT - {facts.model_name} {facts.model_version}"]
    for f in facts.findings:
        verdict = "PRESENT" if f.present else "ABSENT"
        lines.append(f"{f.name}: {verdict} (p={f.probability:.3f}, threshold {f.threshold:.3f})")
    return [*lines, facts.warning]


def burn_in(overlay_rgb: np.ndarray, facts: ResultFacts) -> np.ndarray:
    """The overlay (H x W x 3 uint8) below a black banner carrying :func:`banner_lines`."""
    if overlay_rgb.ndim != 3 or overlay_rgb.shape[2] != 3 or overlay_rgb.dtype != np.uint8:
        raise InputError("the explanation overlay must be an RGB uint8 array")
    image = PILImage.fromarray(overlay_rgb)
    if image.width < MIN_WIDTH:
        image = image.resize((MIN_WIDTH, round(image.height * MIN_WIDTH / image.width)))
    size = max(12, image.width // 40)
    font = ImageFont.load_default(size=size)
    chars = max(20, int(image.width / (size * 0.55)))
    lines = [part for line in banner_lines(facts) for part in textwrap.wrap(line, chars)]
    line_height = int(size * 1.3)
    canvas = PILImage.new("RGB", (image.width, image.height + line_height * len(lines) + size))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((size // 2, size // 2 + i * line_height), line, fill=(255, 255, 0), font=font)
    canvas.paste(image, (0, canvas.height - image.height))
    return np.asarray(canvas)


def sc_uids(source: Dataset, facts: ResultFacts) -> tuple[str, str]:
    """(series, instance) UIDs of the capture, derived like the SR's."""
    version = (facts.model_name, facts.model_version)
    series = derived_uid(str(source.StudyInstanceUID), *version, "sc-series")
    return series, derived_uid(str(source.SOPInstanceUID), *version, "sc")


def build_sc(source: Dataset, overlay_rgb: np.ndarray, facts: ResultFacts) -> Dataset:
    """The Secondary Capture dataset, in the source's study, with the banner burned in."""
    series_uid, instance_uid = sc_uids(source, facts)
    with warnings.catch_warnings():  # highdicom judges the source's person names: not ours to fix
        warnings.filterwarnings("ignore", message=".*person name", category=UserWarning)
        sc = _from_source(source, overlay_rgb, facts, series_uid, instance_uid)
    sc.BurnedInAnnotation = "YES"
    sc.Laterality = None  # type 2C in General Series: present, empty for a chest image
    sc.SeriesDescription = f"AI explanation {facts.model_name} {facts.model_version}"[:64]
    sc.ImageComments = facts.warning[:10240]
    return sc


def _from_source(
    source: Dataset, overlay_rgb: np.ndarray, facts: ResultFacts, series_uid: str, uid: str
) -> Dataset:
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=burn_in(overlay_rgb, facts),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


def sc_bytes(source: Dataset, overlay_rgb: np.ndarray, facts: ResultFacts) -> bytes:
    """:func:`build_sc` written as a DICOM file."""
    buffer = io.BytesIO()
    build_sc(source, overlay_rgb, facts).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
