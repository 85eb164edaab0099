"""STOW-RS: DICOM instances posted as ``multipart/related; type="application/dicom"``.

Each part is admitted like a C-STORE (:func:`radvigil.pacs.intake.admit`) into the DICOM spool
under the project home; ``radvigil dicom listen`` on the same home predicts them and sends the
results back. The answer is the PS3.18 store response (DICOM JSON): 200 when every instance was
taken, 202 when some failed, 409 when none was.
"""

from __future__ import annotations

import email.parser
import email.policy

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from radvigil.pacs.intake import Intake, admit
from radvigil.pacs.spool import DicomSpool
from radvigil.service.deps import Predictor, State
from radvigil.service.errors import ApiError

router = APIRouter(prefix="/dicom-web", tags=["dicomweb"])
STOW_SOURCE = "DICOMWEB"  # the "calling AE" of instances that came by STOW-RS


def _parts(content_type: str, body: bytes) -> list[bytes]:
    kind = content_type.split(";")[0].strip().lower()
    if kind != "multipart/related" or "boundary=" not in content_type:
        raise ApiError(
            415, "unsupported_media_type", 'send multipart/related; type="application/dicom"'
        )
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    payloads = [p.get_payload(decode=True) for p in message.iter_parts()]
    parts = [p if isinstance(p, bytes) else b"" for p in payloads]  # None: a nested multipart
    if not parts:
        raise ApiError(400, "invalid_input", "the multipart body holds no parts")
    return parts


def _item(intake: Intake) -> dict:
    item: dict = {}
    if intake.sop_class:
        item["00081150"] = {"vr": "UI", "Value": [intake.sop_class]}
    if intake.sop_instance:
        item["00081155"] = {"vr": "UI", "Value": [intake.sop_instance]}
    if intake.outcome == "refused":
        item["00081197"] = {"vr": "US", "Value": [intake.status]}
    return item


@router.post(
    "/studies",
    summary="STOW-RS: store CR/DX instances for prediction (multipart/related)",
    responses={
        409: {"description": "no instance was taken"},
        415: {"description": "not multipart/related"},
    },
)
async def stow(request: Request, state: State, key: Predictor) -> JSONResponse:
    limit = state.settings.max_request_bytes
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, "upload_too_large", f"request body exceeds {limit:,} bytes")
    spool = DicomSpool(state.settings.dicom_spool_dir)
    intakes = [
        admit(part, spool, STOW_SOURCE, state.settings.max_upload_bytes)
        for part in _parts(request.headers.get("content-type", ""), bytes(body))
    ]
    taken = [_item(i) for i in intakes if i.outcome != "refused"]
    failed = [_item(i) for i in intakes if i.outcome == "refused"]
    answer: dict = {}
    if taken:
        answer["00081199"] = {"vr": "SQ", "Value": taken}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else (202 if taken else 409)
    return JSONResponse(answer, status_code=status, media_type="application/dicom+json")
