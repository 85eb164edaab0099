"""An HL7 v2.5.1 ``ORU^R01`` message of one prediction, for a RIS that takes results by MLLP.

One OBR (result status P, preliminary) with, per finding, a numeric OBX (the probability,
abnormal flag A when present at the operating threshold, N when absent) and a coded OBX with the
verdict; the decision-support warning is an NTE. Patient identity is the caller's to add (the
RIS's PID), radvigil holds none.
"""

from __future__ import annotations

from datetime import datetime

import hl7

from radvigil.reports.dicom_sr import finding_code
from radvigil.reports.facts import ResultFacts

SEGMENT_END = "\r"


def _escape(text: str) -> str:
    """HL7 escapes for the delimiters ``| ^ ~ \\ &`` in free text."""
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "\\F\\"), ("^", "\\S\\"), ("~", "\\R\\"), ("&", "\\T\\")):
        out = out.replace(char, code)
    return out


def oru_r01(
    facts: ResultFacts,
    when: datetime,
    *,
    sending_facility: str = "RADVIGIL",
    receiving_app: str = "RIS",
    patient_id: str = "",
) -> str:
    """The message text (segments joined by carriage returns)."""
    stamp = when.strftime("%Y%m%d%H%M%S")
    control = facts.prediction_id[:20]
    segments = [
        f"MSH|^~\\&|RADVIGIL|{_escape(sending_facility)}|{_escape(receiving_app)}||{stamp}||"
        f"ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{_escape(patient_id)}",
        f"OBR|1||{_escape(facts.prediction_id)}|18748-4^Diagnostic imaging study^LN|||{stamp}"
        + "|" * 18
        + "P",
    ]
    n = 0
    for f in facts.findings:
        code = finding_code(f.name)
        concept = f"{code.value}^{_escape(code.meaning)}^{code.scheme_designator}"
        n += 1
        segments.append(
            f"OBX|{n}|NM|{concept}|1|{f.probability:.6f}|1|0-{f.threshold:.6f}|"
            f"{'A' if f.present else 'N'}|||P"
        )
        n += 1
        verdict = "52101004^Present^SCT" if f.present else "2667000^Absent^SCT"
        segments.append(f"OBX|{n}|CE|{concept}|2|{verdict}||||||P")
    algorithm = _escape(f"{facts.model_name} {facts.model_version}")
    segments.append(f"NTE|1|L|{_escape(facts.warning)} Algorithm: {algorithm}.")
    return SEGMENT_END.join(segments) + SEGMENT_END


def parsed(message: str) -> hl7.Message:
    """The message parsed by the ``hl7`` package (raises on a malformed message)."""
    return hl7.parse(message)
