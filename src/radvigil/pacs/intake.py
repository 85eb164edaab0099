"""Admission of one DICOM instance that arrived by STOW-RS: the receiver's checks, on bytes.

The C-STORE handler gets a dataset from pynetdicom after negotiation; a STOW-RS part is raw
bytes, so its transfer syntax is checked here too. Outcomes and status codes are the C-STORE
ones (``radvigil.pacs.receiver``), so both entries answer alike.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from radvigil.pacs.receiver import (
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH,
    OUT_OF_RESOURCES,
    RADIOGRAPHS,
    SUCCESS,
    decodable_syntaxes,
)
from radvigil.pacs.spool import DicomSpool

UNSUPPORTED_SYNTAX = 0xC122  # PS3.18: referenced transfer syntax not supported
SPOOL_FAILED = "spool write failed"  # the only refusal that is ours, not the instance's


@dataclass(frozen=True)
class Intake:
    """What became of one instance: outcome, DICOM status, a PHI-free comment, its UIDs."""

    outcome: Literal["stored", "ignored", "refused"]
    status: int
    comment: str | None = None
    sop_class: str | None = None
    sop_instance: str | None = None


def admit(data: bytes, spool: DicomSpool, source: str, max_bytes: int) -> Intake:
    """Check one instance's header and spool it (radiographs) or ignore it (other classes)."""
    if len(data) > max_bytes:
        return Intake("refused", OUT_OF_RESOURCES, "instance exceeds the size limit")
    try:
        ds = dcmread(io.BytesIO(data))
        sop_class, sop = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        study, syntax = str(ds.StudyInstanceUID), str(ds.file_meta.TransferSyntaxUID)
        has_pixels = "PixelData" in ds and "Rows" in ds and "Columns" in ds
    except (InvalidDicomError, AttributeError, ValueError, KeyError, EOFError, TypeError):
        return Intake("refused", CANNOT_UNDERSTAND, "not a DICOM file with SOP and study UIDs")
    if sop_class not in RADIOGRAPHS:
        return Intake("ignored", SUCCESS, None, sop_class, sop)
    if syntax not in decodable_syntaxes():
        return Intake(
            "refused", UNSUPPORTED_SYNTAX, "transfer syntax not decodable", sop_class, sop
        )
    if not (study and sop and has_pixels):
        return Intake("refused", DOES_NOT_MATCH, "no UIDs or no pixel data", sop_class, sop)
    try:
        spool.put(data, study, sop, source)
    except OSError:
        return Intake("refused", OUT_OF_RESOURCES, SPOOL_FAILED, sop_class, sop)
    return Intake("stored", SUCCESS, None, sop_class, sop)
