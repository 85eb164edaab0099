"""Outbox senders to the RIS/EHR: a FHIR transaction bundle over HTTP, an ORU^R01 over MLLP.

Both decide what a failure means for the outbox: a refusal of the object itself (FHIR 4xx but
408/409/425/429; HL7 ACK ``AR``/``CR``) raises :class:`DeliveryRejectedError` and is
dead-lettered at once, anything else (unreachable, timeout, 5xx, ``AE``) raises
:class:`DeliveryError` and is retried with the outbox back-off. Error messages carry status
codes and coded outcomes only, never the receiver's free text (it may echo data).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import hl7
import httpx
from hl7.exceptions import HL7Exception
from hl7.mllp import InvalidBlockError, open_hl7_connection

from radvigil.errors import DeliveryError, DeliveryRejectedError

FHIR_JSON = "application/fhir+json"
RETRYABLE_HTTP = {408, 409, 425, 429}  # timeout, concurrent conditional create, too early/many
HL7_ACCEPT = {"AA", "CA"}
HL7_REJECT = {"AR", "CR"}


@dataclass
class FhirSender:
    """POSTs a transaction bundle to a FHIR server's base URL (conditional create inside)."""

    url: str
    token: str | None = None
    timeout_s: float = 30.0

    def send(self, path: Path) -> None:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            answer = httpx.post(
                self.url, content=path.read_bytes(), headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"FHIR server unreachable: {type(exc).__name__}") from exc
        status = answer.status_code
        if status >= 500 or status in RETRYABLE_HTTP:
            raise DeliveryError(f"FHIR server answered {status}{_issue_codes(answer)}")
        if status >= 300:
            raise DeliveryRejectedError(
                f"FHIR server refused the bundle with {status}{_issue_codes(answer)}"
            )
        _check_transaction_response(answer)


def _issue_codes(answer: httpx.Response) -> str:
    """The coded issues of an OperationOutcome body (``: invalid, required``), else nothing."""
    try:
        body = answer.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    codes = [str(i.get("code"))[:40] for i in body.get("issue", []) if isinstance(i, dict)]
    return f": {', '.join(codes[:5])}" if codes else ""


def _check_transaction_response(answer: httpx.Response) -> None:
    """A 2xx must be a transaction-response whose every entry succeeded."""
    try:
        body = answer.json()
    except ValueError as exc:
        raise DeliveryError("FHIR server answered 2xx without a JSON body") from exc
    if not isinstance(body, dict) or body.get("type") != "transaction-response":
        raise DeliveryError("FHIR server answered 2xx without a transaction-response bundle")
    for entry in body.get("entry", []):
        status = str(((entry or {}).get("response") or {}).get("status", ""))
        if not status.startswith("2"):
            raise DeliveryError(f"FHIR transaction entry answered {status[:3] or 'nothing'}")


@dataclass
class Hl7Sender:
    """Sends one HL7 v2 message over MLLP (``hl7.mllp``) and checks the ACK's MSA."""

    host: str
    port: int
    timeout_s: float = 30.0

    def send(self, path: Path) -> None:
        text = path.read_bytes().decode("utf-8")  # not read_text: it turns the \r into \n
        control = str(hl7.parse(text).segment("MSH")[10])
        try:
            ack = asyncio.run(asyncio.wait_for(self._exchange(text), self.timeout_s))
        except TimeoutError as exc:
            raise DeliveryError(f"no HL7 ACK within {self.timeout_s:g} s") from exc
        except (OSError, InvalidBlockError, HL7Exception, ValueError) as exc:
            raise DeliveryError(f"HL7 exchange failed: {type(exc).__name__}") from exc
        _check_ack(ack, control)

    async def _exchange(self, text: str) -> hl7.Message:
        reader, writer = await open_hl7_connection(self.host, self.port, encoding="utf-8")
        try:
            writer.writeblock(text.encode("utf-8"))
            await writer.drain()
            return await reader.readmessage()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _check_ack(ack: hl7.Message, control: str) -> None:
    try:
        msa = ack.segment("MSA")
    except KeyError as exc:
        raise DeliveryError("HL7 answer has no MSA segment") from exc
    code, acked = str(msa[1]), str(msa[2])
    if acked != control:
        raise DeliveryError("HL7 ACK acknowledges another message (MSA-2 differs)")
    if code in HL7_ACCEPT:
        return
    if code in HL7_REJECT:
        raise DeliveryRejectedError(f"RIS rejected the ORU^R01 (MSA-1 {code})")
    raise DeliveryError(f"RIS answered MSA-1 {code[:2] or 'nothing'} (application error)")
