"""The DICOM C-STORE receiver (pynetdicom SCP): accept, spool, answer at once.

A sender's DIMSE timeout is seconds, so the handler never decodes pixels or runs a model: it
checks the header, writes the received bytes atomically to the :class:`DicomSpool` and answers.
Only CR and DX images in transfer syntaxes that pydicom's installed pixel back-ends can decode
are negotiated for prediction; any other storage SOP class is accepted and ignored so a PACS
job that sends a whole study (reports, dose SRs) does not fail. Every refusal carries a status
and an Error Comment that names what was wrong, never patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from pydicom import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.transport import ThreadedAssociationServer

from radvigil.errors import ConfigError
from radvigil.pacs.metrics import PacsMetrics
from radvigil.pacs.spool import DicomSpool

log = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
RADIOGRAPHS = (CR, DX_PRESENTATION, DX_PROCESSING)
UNCOMPRESSED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
COMPRESSED = (
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


def decodable_syntaxes() -> list[str]:
    """Uncompressed syntaxes plus every compressed one an installed pixel back-end decodes."""
    return [*UNCOMPRESSED, *(uid for uid in COMPRESSED if get_decoder(uid).is_available)]


@dataclass
class ReceiverConfig:
    """Who the receiver is and whom it answers."""

    ae_title: str
    host: str
    port: int
    allowed_aes: Sequence[str] = ()
    max_bytes: int = 64 * 1024 * 1024
    syntaxes: list[str] = field(default_factory=decodable_syntaxes)


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


class DicomReceiver:
    """A pynetdicom storage SCP that spools CR/DX instances and acknowledges at once."""

    def __init__(self, config: ReceiverConfig, spool: DicomSpool, metrics: PacsMetrics) -> None:
        self.config, self.spool, self.metrics = config, spool, metrics
        self.ae = AE(ae_title=config.ae_title)
        self.ae.require_called_aet = True
        if config.allowed_aes:
            self.ae.require_calling_aet = list(config.allowed_aes)
        self.ae.add_supported_context(VERIFICATION)
        for uid in RADIOGRAPHS:
            self.ae.add_supported_context(uid, config.syntaxes)
        for context in AllStoragePresentationContexts:
            syntax = context.abstract_syntax  # set on every built-in context
            if syntax is not None and syntax not in RADIOGRAPHS:
                self.ae.add_supported_context(syntax, ALL_TRANSFER_SYNTAXES)
        self._server: ThreadedAssociationServer | None = None

    def start(self) -> None:
        """Listen on ``host:port`` in pynetdicom's own threads."""
        try:
            self._server = self.ae.start_server(
                (self.config.host, self.config.port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, self.on_store)],
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for DICOM on {self.config.host}:{self.config.port}: {exc}"
            ) from exc
        log.info(
            "DICOM receiver %s listening on %s:%d",
            self.config.ae_title,
            self.config.host,
            self.config.port,
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def on_store(self, event: evt.Event) -> Dataset:
        """Handle one C-STORE: spool a radiograph, ignore other classes, refuse the malformed."""
        calling = event.assoc.requestor.ae_title.strip()
        outcome, status = self._store(event, calling)
        self.metrics.count_intake(calling, outcome)
        return status

    def _store(self, event: evt.Event, calling: str) -> tuple[str, Dataset]:
        if event.context.abstract_syntax not in RADIOGRAPHS:
            return "ignored", _status(SUCCESS)
        try:
            dataset = event.dataset
            study_uid, sop_uid = str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID)
            has_pixels = "PixelData" in dataset and "Rows" in dataset and "Columns" in dataset
        except Exception as exc:  # pydicom raises many kinds on a malformed stream
            log.warning("refused an unreadable instance from %s: %s", calling, type(exc).__name__)
            return "refused", _status(CANNOT_UNDERSTAND, "dataset could not be parsed")
        if not study_uid or not sop_uid:
            return "refused", _status(DOES_NOT_MATCH, "no Study or SOP Instance UID")
        request = cast(C_STORE, event.request)  # the handler is bound to EVT_C_STORE only
        if sop_uid != str(request.AffectedSOPInstanceUID):
            return "refused", _status(DOES_NOT_MATCH, "SOP Instance UID differs from request")
        if not has_pixels:
            return "refused", _status(DOES_NOT_MATCH, "no pixel data, rows or columns")
        try:
            data = event.encoded_dataset()
            if len(data) > self.config.max_bytes:
                return "refused", _status(OUT_OF_RESOURCES, "instance exceeds the size limit")
            self.spool.put(data, study_uid, sop_uid, calling)
        except OSError as exc:
            log.error("could not spool an instance from %s: %s", calling, type(exc).__name__)
            return "refused", _status(OUT_OF_RESOURCES, "spool write failed")
        return "stored", _status(SUCCESS)
